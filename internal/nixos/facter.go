package nixos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// CopyFacterReport copies the nixos-facter hardware report that
// nixos-anywhere wrote (src, normally <flake dir>/facter.json) to
// <workspaceDir>/facter.json and returns that path, for the action's
// facter-report output: commit it next to your configuration and set
// hardware.facter.reportPath. The report must be a JSON object; a report
// with log lines in front (nixos-anywhere issue 494) is refused rather
// than handed on.
func CopyFacterReport(src, workspaceDir string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("failed to read the hardware report: %w", err)
	}
	var report map[string]any
	if err := json.Unmarshal(data, &report); err != nil {
		return "", fmt.Errorf("failed to read the hardware report %q: not a JSON object (%v); it starts with %q", src, err, prefix(string(bytes.TrimSpace(data)), 60))
	}
	dst := filepath.Join(workspaceDir, FacterFile)
	if err := writeFile(dst, data); err != nil {
		return "", fmt.Errorf("failed to write the hardware report to the workspace: %w", err)
	}
	return dst, nil
}
