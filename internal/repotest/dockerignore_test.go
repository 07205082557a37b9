package repotest

import (
	"bytes"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// dockerignore holds .dockerignore's patterns in order, as Docker applies
// them: the last pattern that matches a path (or one of its parent
// directories) decides, and a leading ! keeps the path.
type dockerignore []ignorePattern

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

func parseDockerignore(src string) (dockerignore, error) {
	var d dockerignore
	for _, line := range strings.Split(src, "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		neg := false
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			neg, p = true, strings.TrimSpace(rest)
		}
		p = path.Clean(strings.TrimPrefix(p, "/"))
		re, err := regexp.Compile(ignoreRegexp(p))
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", line, err)
		}
		d = append(d, ignorePattern{re: re, negate: neg})
	}
	return d, nil
}

// ignoreRegexp turns a pattern into a regular expression the way Docker's
// patternmatcher does: * and ? stop at a slash, ** crosses them.
func ignoreRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			i++
			if i+1 < len(p) && p[i+1] == '/' {
				i++
				b.WriteString("(.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// excluded reports whether the slash-separated path relative to the context
// root is left out of the build context.
func (d dockerignore) excluded(name string) bool {
	ex := false
	for _, p := range d {
		for dir := name; dir != "." && dir != "/"; dir = path.Dir(dir) {
			if p.re.MatchString(dir) {
				ex = !p.negate
				break
			}
		}
	}
	return ex
}

func TestDockerignoreMatching(t *testing.T) {
	t.Parallel()
	d, err := parseDockerignore("# comment\n*\n!go.mod\n!cmd/\n!internal/\n**/*_test.go\n**/testdata/\n!internal/keep/testdata/x\n")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, name := range []string{
		"go.mod", "go.sum", "README.md", ".git/config",
		"cmd/action/main.go", "cmd/action/main_test.go",
		"internal/a/b/c.go", "internal/a/testdata/golden.txt", "internal/keep/testdata/x",
	} {
		got[name] = d.excluded(name)
	}
	want := map[string]bool{
		"go.mod": false, "go.sum": true, "README.md": true, ".git/config": true,
		"cmd/action/main.go": false, "cmd/action/main_test.go": true,
		"internal/a/b/c.go": false, "internal/a/testdata/golden.txt": true, "internal/keep/testdata/x": false,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("excluded (-want +got):\n%s", diff)
	}
}

// buildInputs lists, relative to the repository root, every file of this
// module that `go build` of the Dockerfile's commands reads: go.mod, go.sum,
// the Go and embedded files of every package of the module they import.
// Problems are targets that are not main packages.
func buildInputs(t *testing.T, targets []string) (files []string, problems []string) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files = []string{"go.mod", "go.sum"}
	const format = `{{if and .Module .Module.Main}}{{.ImportPath}}|{{.Dir}}|{{join .GoFiles ","}}|{{join .EmbedFiles ","}}{{end}}`
	goList := func(args ...string) (string, error) {
		cmd := exec.Command(goCmd, append([]string{"list", "-e"}, args...)...)
		cmd.Dir = abs
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go list %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}
	for _, target := range targets {
		// The target itself: a main package without errors (a missing or
		// empty directory has no module, so -deps below would skip it).
		self, err := goList("-f", `{{.Name}}|{{if .Error}}{{.Error}}{{end}}`, target)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if name, perr, _ := strings.Cut(self, "|"); name != "main" || perr != "" {
			problems = append(problems, fmt.Sprintf("%s is not a main package the image can build: %s", target, strings.TrimSpace("package "+name+" "+perr)))
			continue
		}
		out, err := goList("-deps", "-f", format, target)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Split(line, "|")
			if len(f) != 4 {
				continue
			}
			dir, err := filepath.Rel(abs, f[1])
			if err != nil {
				t.Fatal(err)
			}
			dir = filepath.ToSlash(dir)
			for _, list := range []string{f[2], f[3]} {
				for _, name := range strings.Split(list, ",") {
					if name != "" {
						files = append(files, path.Join(dir, name))
					}
				}
			}
		}
	}
	return files, problems
}

// dockerignoreProblems lists the build inputs that .dockerignore leaves out
// of the build context, and the paths that should stay out but do not.
func dockerignoreProblems(src string, inputs []string) []string {
	d, err := parseDockerignore(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, f := range inputs {
		if d.excluded(f) {
			problems = append(problems, fmt.Sprintf("%s is needed by go build but excluded from the build context", f))
		}
	}
	// Never in the context: the repository history (big, and a secret in an
	// old commit would end up in the builder's layers) and the workflows.
	for _, f := range []string{".git/config", ".github/workflows/release.yml"} {
		if !d.excluded(f) {
			problems = append(problems, fmt.Sprintf("%s is in the build context; exclude it", f))
		}
	}
	return problems
}

// dockerBuildTargets are the packages the Dockerfile's builder compiles.
var dockerBuildTargets = []string{"./cmd/action", "./cmd/bot"}

// TestDockerBuildTargetsAndContext: the commands the builder compiles are
// main packages, and every file their build reads is in the build context.
func TestDockerBuildTargetsAndContext(t *testing.T) {
	t.Parallel()
	inputs, problems := buildInputs(t, dockerBuildTargets)
	reportProblems(t, "Dockerfile", problems)
	reportProblems(t, ".dockerignore", dockerignoreProblems(readRepoFile(t, ".dockerignore"), inputs))
}

func TestDockerignoreChecksCanFail(t *testing.T) {
	t.Parallel()
	src := readRepoFile(t, ".dockerignore")
	inputs := []string{"go.mod", "go.sum", "cmd/action/main.go", "nix-config/embed.go", "nix-config/flake.nix"}
	if p := dockerignoreProblems(src, inputs); len(p) != 0 {
		t.Fatalf("the real .dockerignore: %q", p)
	}
	tests := []struct{ name, src, want string }{
		{"embedded file excluded", src + "\n**/*.nix\n", "nix-config/flake.nix is needed"},
		{"go.sum excluded", mustReplace(t, src, "!go.sum\n", ""), "go.sum is needed"},
		{"git in context", src + "\n!.git\n", ".git/config is in the build context"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, dockerignoreProblems(tc.src, inputs), tc.want)
		})
	}
}
