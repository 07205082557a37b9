package nixos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Verify checks that the target now runs NixOS: /etc/os-release must say
// ID=nixos. The caller connects with the same pinned host key as before the
// install and adds the serial log tail to the error.
func Verify(ctx context.Context, r Commander) error {
	out, err := r.Output(ctx, "cat /etc/os-release")
	if err != nil {
		return fmt.Errorf("failed to read /etc/os-release on the target: %w", err)
	}
	rel := parseOSRelease(out)
	if rel["ID"] != "nixos" {
		name := rel["PRETTY_NAME"]
		if name == "" {
			name = rel["ID"]
		}
		return fmt.Errorf("target does not run NixOS after the install: /etc/os-release says ID=%q (%q); the install or the reboot into NixOS failed", rel["ID"], name)
	}
	return nil
}

// parseOSRelease reads os-release(5): KEY=value lines, values optionally
// quoted with shell quoting.
// OSReleaseID is the ID field of an os-release(5) file: "nixos", "ubuntu".
func OSReleaseID(data []byte) string { return parseOSRelease(data)["ID"] }

func parseOSRelease(data []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if v[0] == '"' {
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				} else {
					v = v[1 : len(v)-1]
				}
			} else {
				v = v[1 : len(v)-1]
			}
		}
		m[k] = v
	}
	return m
}
