package repotest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/nixos"
)

// instruction is one Dockerfile instruction, continuation lines joined and
// comment lines dropped, as Docker reads it.
type instruction struct {
	Line  int    // 1-based line of the keyword
	Cmd   string // upper-case keyword: FROM, RUN, ...
	Args  string // the rest, continuations joined with a space
	Stage int    // index of the FROM stage it belongs to
}

type stage struct {
	Image string // FROM argument: name[:tag][@digest] or an earlier stage
	Name  string // AS name, lower-case
	Insts []instruction
}

// parseDockerfile splits src into stages of instructions. It knows what
// these checks need: comments, line continuations, FROM ... AS.
func parseDockerfile(src string) []stage {
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{}
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"): // --platform=...
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.Name = strings.ToLower(f[i+1])
					i++
				case st.Image == "":
					st.Image = f[i]
				}
			}
			stages = append(stages, st)
		}
		if len(stages) == 0 {
			return // ARG before the first FROM: not part of a stage
		}
		in.Stage = len(stages) - 1
		stages[in.Stage].Insts = append(stages[in.Stage].Insts, in)
	}
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments (and parser directives) never continue an instruction
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

var (
	digestRE  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	semverRE  = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+$`)
	goImageRE = regexp.MustCompile(`^(?:docker\.io/)?(?:library/)?golang:([0-9]+\.[0-9]+(?:\.[0-9]+)?)`)
)

// dockerfileWant is what the Dockerfile must agree with elsewhere in the repository.
type dockerfileWant struct {
	GoVersion            string // go.mod's go directive
	NixosAnywhereVersion string // internal/nixos.NixosAnywhereVersion
}

// dockerfileProblems lists every way src breaks the image's rules.
func dockerfileProblems(src string, want dockerfileWant) []string {
	var problems []string
	add := func(in instruction, format string, a ...any) {
		problems = append(problems, fmt.Sprintf("line %d: %s %s: ", in.Line, in.Cmd, abbreviate(in.Args))+fmt.Sprintf(format, a...))
	}
	stages := parseDockerfile(src)
	if len(stages) < 2 {
		return []string{fmt.Sprintf("%d stages, want a multi-stage build (Go builder, Nix runtime)", len(stages))}
	}
	names := map[string]int{}
	for i, st := range stages {
		from := st.Insts[0]
		if _, ok := names[strings.ToLower(st.Image)]; !ok && !digestRE.MatchString(st.Image) {
			add(from, "base image %q is not pinned by digest (name:tag@sha256:<64 hex>)", st.Image)
		}
		if st.Name != "" {
			names[st.Name] = i
		}
	}

	// The builder: the Go stage, the Go version of go.mod, static and versioned binaries.
	builder := -1
	for i, st := range stages {
		if m := goImageRE.FindStringSubmatch(st.Image); m != nil {
			builder = i
			if m[1] != want.GoVersion {
				add(st.Insts[0], "Go %s, but go.mod says go %s (the golang image sets GOTOOLCHAIN=local)", m[1], want.GoVersion)
			}
		}
	}
	if builder < 0 {
		problems = append(problems, "no golang builder stage")
	} else {
		problems = append(problems, builderProblems(stages[builder], add)...)
	}

	// The runtime: the last stage.
	rt := stages[len(stages)-1]
	if !strings.HasPrefix(rt.Image, "nixos/nix:") && !strings.HasPrefix(rt.Image, "docker.io/nixos/nix:") {
		add(rt.Insts[0], "the runtime stage must be the official Nix image nixos/nix, not %q", rt.Image)
	}
	copied := map[string]bool{} // destinations of COPY --from=<builder>
	var entrypoints, cmds []instruction
	var runs strings.Builder
	for _, st := range stages {
		for _, in := range st.Insts {
			if in.Cmd == "USER" {
				add(in, "no USER: GitHub runs container actions as root and mounts the workspace owned by the runner")
			}
		}
	}
	for _, in := range rt.Insts {
		switch in.Cmd {
		case "WORKDIR":
			add(in, "no WORKDIR in the runtime stage: GitHub sets --workdir to the workspace")
		case "RUN":
			runs.WriteString(in.Args + "\n")
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in)
		case "CMD":
			cmds = append(cmds, in)
		case "COPY":
			f := strings.Fields(in.Args)
			from := ""
			for _, a := range f {
				if v, ok := strings.CutPrefix(a, "--from="); ok {
					from = strings.ToLower(v)
				}
			}
			if i, ok := names[from]; ok && i == builder && len(f) > 0 {
				copied[f[len(f)-1]] = true
			}
		}
	}

	// nix.conf: flakes, and no sandbox (it needs privileges a container action lacks).
	for _, line := range []string{"experimental-features = nix-command flakes", "sandbox = false"} {
		if !strings.Contains(runs.String(), line) {
			problems = append(problems, fmt.Sprintf("runtime stage: no RUN writes %q to /etc/nix/nix.conf", line))
		}
	}
	if !strings.Contains(runs.String(), "/etc/nix/nix.conf") {
		problems = append(problems, "runtime stage: no RUN writes /etc/nix/nix.conf")
	}

	// nixos-anywhere: built at image build time from a pinned release tag.
	problems = append(problems, nixosAnywhereProblems(rt, runs.String(), want.NixosAnywhereVersion)...)

	// ENTRYPOINT: one, exec form, absolute, the binary the builder made.
	if len(entrypoints) != 1 {
		problems = append(problems, fmt.Sprintf("runtime stage: %d ENTRYPOINT instructions, want 1", len(entrypoints)))
	} else {
		in := entrypoints[0]
		argv, err := execForm(in.Args)
		switch {
		case err != nil:
			add(in, "not exec form (a JSON array): a shell would swallow SIGTERM from a cancelled run: %v", err)
		case len(argv) == 0:
			add(in, "empty")
		case !strings.HasPrefix(argv[0], "/"):
			add(in, "%q is relative: GitHub chooses the working directory", argv[0])
		case !copied[argv[0]]:
			add(in, "%q is not a file copied from the builder stage (copied: %v)", argv[0], keys(copied))
		}
	}
	for _, in := range cmds {
		argv, err := execForm(in.Args)
		if err != nil {
			add(in, "not exec form (a JSON array): %v", err)
			continue
		}
		for _, a := range argv {
			if strings.HasPrefix(a, "./") || strings.HasPrefix(a, "../") {
				add(in, "%q is relative to the working directory, which GitHub chooses", a)
			}
		}
	}
	return problems
}

// builderProblems checks the Go build: static (CGO_ENABLED=0), -trimpath,
// the version through -ldflags -X, both commands.
func builderProblems(st stage, add func(instruction, string, ...any)) []string {
	var problems []string
	env := ""
	var builds []instruction
	for _, in := range st.Insts {
		switch in.Cmd {
		case "ENV", "ARG":
			env += in.Args + "\n"
		case "RUN":
			if strings.Contains(in.Args, "go build") {
				builds = append(builds, in)
				env += in.Args + "\n"
			}
		}
	}
	if len(builds) == 0 {
		return []string{"builder stage: no RUN with go build"}
	}
	if !strings.Contains(env, "CGO_ENABLED=0") {
		problems = append(problems, "builder stage: CGO_ENABLED=0 not set (the runtime image has no libc at /lib)")
	}
	for _, in := range builds {
		for _, flag := range []string{"-trimpath", "-X github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/cli.Version="} {
			if !strings.Contains(in.Args, flag) && !strings.Contains(env, flag) {
				add(in, "missing %s", flag)
			}
		}
	}
	for _, pkg := range dockerBuildTargets {
		if !slices.ContainsFunc(builds, func(in instruction) bool { return strings.Contains(in.Args, pkg) }) {
			problems = append(problems, fmt.Sprintf("builder stage: no go build of %s", pkg))
		}
	}
	return problems
}

var nixosAnywhereRefRE = regexp.MustCompile(`github:nix-community/nixos-anywhere/([^\s"'#?]+)`)

func nixosAnywhereProblems(rt stage, runs, want string) []string {
	m := nixosAnywhereRefRE.FindStringSubmatch(runs)
	if m == nil {
		return []string{"runtime stage: no RUN installs github:nix-community/nixos-anywhere/<tag> (a run must not download it)"}
	}
	ref := m[1]
	// A build argument (${NAME} or $NAME): its default in the stage is the pin.
	if name, ok := strings.CutPrefix(ref, "$"); ok {
		name = strings.TrimSuffix(strings.TrimPrefix(name, "{"), "}")
		ref = ""
		for _, in := range rt.Insts {
			if k, v, ok := strings.Cut(in.Args, "="); in.Cmd == "ARG" && ok && k == name {
				ref = strings.Trim(v, `"`)
			}
		}
		if ref == "" {
			return []string{fmt.Sprintf("runtime stage: nixos-anywhere ref %s has no ARG default", m[1])}
		}
	}
	if !semverRE.MatchString(ref) {
		return []string{fmt.Sprintf("runtime stage: nixos-anywhere ref %q is not a release tag (X.Y.Z)", ref)}
	}
	if ref != want {
		return []string{fmt.Sprintf("runtime stage: nixos-anywhere %s, but internal/nixos.NixosAnywhereVersion is %s; keep them equal", ref, want)}
	}
	return nil
}

func execForm(args string) ([]string, error) {
	var argv []string
	if err := json.Unmarshal([]byte(args), &argv); err != nil {
		return nil, err
	}
	return argv, nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

var goDirectiveRE = regexp.MustCompile(`(?m)^go ([0-9][^\s]*)\s*$`)

func goModVersion(t *testing.T) string {
	t.Helper()
	m := goDirectiveRE.FindStringSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1]
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	want := dockerfileWant{GoVersion: goModVersion(t), NixosAnywhereVersion: nixos.NixosAnywhereVersion}
	reportProblems(t, "Dockerfile", dockerfileProblems(readRepoFile(t, "Dockerfile"), want))
}

// TestDockerfileChecksCanFail breaks a copy of the Dockerfile in each way the
// rules forbid and expects the check to say so.
func TestDockerfileChecksCanFail(t *testing.T) {
	t.Parallel()
	src := readRepoFile(t, "Dockerfile")
	want := dockerfileWant{GoVersion: goModVersion(t), NixosAnywhereVersion: nixos.NixosAnywhereVersion}
	entry := `ENTRYPOINT ["/usr/local/bin/nixos-cloud-deploy"]`
	digest := regexp.MustCompile(`(FROM nixos/nix:[^@\s]+)@sha256:[0-9a-f]{64}`)
	tests := []struct {
		name   string
		mutate func(t *testing.T, s string) string
		want   string
	}{
		{"base not pinned", func(t *testing.T, s string) string { return digest.ReplaceAllString(s, "$1") }, "not pinned by digest"},
		{"USER", func(t *testing.T, s string) string { return mustReplace(t, s, entry, "USER nobody\n"+entry) }, "no USER"},
		{"WORKDIR", func(t *testing.T, s string) string { return mustReplace(t, s, entry, "WORKDIR /app\n"+entry) }, "no WORKDIR"},
		{"shell-form entrypoint", func(t *testing.T, s string) string {
			return mustReplace(t, s, entry, "ENTRYPOINT /usr/local/bin/nixos-cloud-deploy")
		}, "not exec form"},
		{"relative entrypoint", func(t *testing.T, s string) string {
			return mustReplace(t, s, entry, `ENTRYPOINT ["./nixos-cloud-deploy"]`)
		}, "is relative"},
		{"entrypoint not from the builder", func(t *testing.T, s string) string {
			return mustReplace(t, s, entry, `ENTRYPOINT ["/root/.nix-profile/bin/bash"]`)
		}, "not a file copied from the builder"},
		{"relative CMD", func(t *testing.T, s string) string { return mustReplace(t, s, "\nCMD []", "\nCMD [\"./run.sh\"]") }, "relative to the working directory"},
		{"sandbox on", func(t *testing.T, s string) string {
			return mustReplace(t, s, "'sandbox = false'", "'sandbox = true'")
		}, `"sandbox = false"`},
		{"no flakes", func(t *testing.T, s string) string {
			return mustReplace(t, s, "'experimental-features = nix-command flakes'", "'experimental-features = nix-command'")
		}, "nix-command flakes"},
		{"nixos-anywhere unpinned", func(t *testing.T, s string) string {
			return mustReplace(t, s, "ARG NIXOS_ANYWHERE_VERSION="+want.NixosAnywhereVersion, "ARG NIXOS_ANYWHERE_VERSION=main")
		}, "not a release tag"},
		{"nixos-anywhere other release", func(t *testing.T, s string) string {
			return mustReplace(t, s, "ARG NIXOS_ANYWHERE_VERSION="+want.NixosAnywhereVersion, "ARG NIXOS_ANYWHERE_VERSION=0.0.1")
		}, "keep them equal"},
		{"cgo", func(t *testing.T, s string) string {
			return mustReplace(t, s, "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1")
		}, "CGO_ENABLED=0"},
		{"old go", func(t *testing.T, s string) string {
			return mustReplace(t, s, "golang:"+want.GoVersion, "golang:1.25.1")
		}, "but go.mod says"},
		{"bot not built", func(t *testing.T, s string) string {
			return strings.ReplaceAll(s, "./cmd/bot", "./cmd/action")
		}, "no go build of ./cmd/bot"},
		{"no version", func(t *testing.T, s string) string {
			return strings.ReplaceAll(s, "internal/cli.Version=", "internal/cli.version=")
		}, "cli.Version="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, dockerfileProblems(tc.mutate(t, src), want), tc.want)
		})
	}
}

// TestParseDockerfile pins the parser on the forms the checks rely on.
func TestParseDockerfile(t *testing.T) {
	t.Parallel()
	src := "# syntax=docker/dockerfile:1\nARG X=1\nFROM golang:1@sha256:" + strings.Repeat("a", 64) + " AS Build\n" +
		"RUN a \\\n  # a comment inside\n  b\n\nFROM --platform=linux/amd64 base\nCOPY --from=build /out/x /x\nENTRYPOINT [\"/x\"]\n"
	got := parseDockerfile(src)
	want := []stage{
		{Image: "golang:1@sha256:" + strings.Repeat("a", 64), Name: "build", Insts: []instruction{
			{Line: 3, Cmd: "FROM", Args: "golang:1@sha256:" + strings.Repeat("a", 64) + " AS Build"},
			{Line: 4, Cmd: "RUN", Args: "a  b"},
		}},
		{Image: "base", Insts: []instruction{
			{Line: 8, Cmd: "FROM", Args: "--platform=linux/amd64 base", Stage: 1},
			{Line: 9, Cmd: "COPY", Args: "--from=build /out/x /x", Stage: 1},
			{Line: 10, Cmd: "ENTRYPOINT", Args: `["/x"]`, Stage: 1},
		}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseDockerfile (-want +got):\n%s", d)
	}
}

// TestDockerfileVersionVariableExists: the -X target must name a string
// variable that exists, or the linker drops the flag without a word.
func TestDockerfileVersionVariableExists(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(root, "internal", "cli", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^var Version = "`).Match(b) {
			return
		}
	}
	t.Errorf(`internal/cli has no "var Version = ..." for -ldflags -X .../internal/cli.Version`)
}
