package nixos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopyFacterReport(t *testing.T) {
	t.Parallel()
	const report = "{\n  \"version\": 1,\n  \"system\": \"x86_64-linux\"\n}\n"
	tests := []struct {
		name    string
		content *string
		wantErr string
	}{
		{name: "report", content: ptr(report)},
		{name: "missing", wantErr: "failed to read the hardware report"},
		// nixos-anywhere issue 494: log lines in front of the JSON.
		{name: "log lines", content: ptr("2025/03/26 23:37:03 INFO building report system=x86_64-linux\n" + report), wantErr: `not a JSON object`},
		{name: "array", content: ptr("[]"), wantErr: "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(t.TempDir(), FacterFile)
			if tc.content != nil {
				if err := os.WriteFile(src, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ws := t.TempDir()
			got, err := CopyFacterReport(src, ws)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CopyFacterReport error = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Stat(filepath.Join(ws, FacterFile)); !os.IsNotExist(err) {
					t.Errorf("a refused report was still written: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(ws, FacterFile); got != want {
				t.Errorf("CopyFacterReport = %q, want %q", got, want)
			}
			data, err := os.ReadFile(got)
			if err != nil || string(data) != report {
				t.Errorf("copied report = %q, %v; want %q", data, err, report)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
