// Package repotest checks the repository's non-Go contracts: the Dockerfile
// (pinned bases, the entrypoint GitHub runs, nix.conf, the pinned
// nixos-anywhere), .dockerignore, and the workflows (deploy inputs equal to
// the action's, pinned third-party actions, no expression in a run: script).
//
// Each check is a function from file contents to a list of problems, so the
// tests run it on the real file (no problems) and on broken copies (the
// problem is found): every check is shown to be able to fail.
package repotest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// root is the repository root as seen from this package's directory, where
// `go test` runs the test binary.
const root = "../../"

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatalf("failed to read %s: %v", name, err)
	}
	return string(b)
}

// expectProblems runs check on a broken variant and fails unless some
// problem contains want.
func expectProblems(t *testing.T, problems []string, want string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem mentions %q; got %q", want, problems)
}

// mustReplace replaces old with new exactly once in s, so a broken variant
// cannot silently equal the original when the file changes.
func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("test setup: %q occurs %d times, want 1", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

func reportProblems(t *testing.T, file string, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Errorf("%s: %s", file, p)
	}
}
