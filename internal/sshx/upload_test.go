package sshx_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshx"
)

func TestUpload(t *testing.T) {
	t.Parallel()
	s := sshtest.Start(t)
	c := dial(t, s)
	secret := make([]byte, 4096)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	marker := "SECRET-MARKER-1f2e3d"
	secret = append(secret, marker...)
	tests := []struct {
		name string
		path string
		data []byte
		mode os.FileMode
	}{
		{"secret key, new directories", "keys/deep/er/deploy_key", secret, 0o600},
		{"executable", "bin/tool", []byte("#!/bin/sh\necho hi\n"), 0o755},
		{"hostile name", "dir with 'quotes'/$(id) `x`\nnewline.txt", []byte("x"), 0o644},
		{"empty file", "empty", nil, 0o640},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := filepath.Join(s.Dir, "upload", tc.path)
			if err := c.Upload(testCtx(t), tc.data, dst, tc.mode); err != nil {
				t.Fatalf("Upload: %v", err)
			}
			got, err := c.Output(testCtx(t), sshx.Quote("cat", "--", dst))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.data) {
				t.Errorf("remote content differs: %d bytes, want %d", len(got), len(tc.data))
			}
			mode, err := c.Output(testCtx(t), sshx.Quote("stat", "-c", "%a", "--", dst))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(string(mode)), fmt.Sprintf("%o", tc.mode.Perm()); got != want {
				t.Errorf("remote mode = %s, want %s", got, want)
			}
		})
	}
	t.Run("replace", func(t *testing.T) {
		t.Parallel()
		dst := filepath.Join(s.Dir, "upload", "replaced")
		for _, data := range []string{"first, longer", "second"} {
			if err := c.Upload(testCtx(t), []byte(data), dst, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := os.ReadFile(dst); string(got) != "second" {
			t.Errorf("content after replace = %q", got)
		}
	})
	t.Cleanup(func() {
		for _, cmd := range s.Commands() {
			if strings.Contains(cmd, marker) {
				t.Errorf("secret bytes reached a command line: %q", cmd)
			}
		}
	})
}
