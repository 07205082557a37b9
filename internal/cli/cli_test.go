package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/keys"
)

const testPub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop"

func run(t *testing.T, args []string, env map[string]string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), Env{
		Args: args, Getenv: func(k string) string { return env[k] },
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Self: "/bin/nixos-cloud-deploy", Workdir: t.TempDir(),
	})
	return code, out.String(), errb.String()
}

func TestPlanOnTerminal(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, []string{"plan", "-n", "web-01", "-l", "westeurope"}, nil)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	for _, want := range []string{"Plan: deploy web-01 in westeurope", "web-01-nsg", "nixos-anywhere", "--copy-host-keys"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
}

// dry-run turns deploy, install and destroy into their plan: nothing is
// asked of Azure (no credentials here at all).
func TestDryRunIsThePlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "-n", "web-01", "--dry-run", "--ssh-public-keys", testPub, "--azure-subscription-id", "00000000-1111-2222-3333-444444444444"}, "Plan: deploy web-01 in uksouth (AzureCloud), resource group web-01 (dry run)"},
		{[]string{"destroy", "-n", "web-01", "--dry-run", "--azure-subscription-id", "00000000-1111-2222-3333-444444444444"}, "Plan: destroy web-01"},
	} {
		code, out, errs := run(t, tc.args, nil)
		if code != ExitOK || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, stdout:\n%s\nstderr:\n%s", tc.args, code, out, errs)
		}
	}
}

func TestBadInputExitCodeAndEveryError(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, []string{"deploy", "-n", "Bad_Name", "-l", "UK South"}, nil)
	if code != ExitBadInput {
		t.Fatalf("exit %d, want %d", code, ExitBadInput)
	}
	if out != "" {
		t.Errorf("nothing belongs on stdout, got %q", out)
	}
	for _, want := range []string{`vm-name "Bad_Name"`, `did you mean "uksouth"`, "ssh-public-keys", "azure-subscription-id"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	if code, _, _ := run(t, []string{"plan", "--vm", "x"}, nil); code != ExitBadInput {
		t.Fatalf("exit %d", code)
	}
	if code, _, _ := run(t, []string{"--help"}, nil); code != ExitOK {
		t.Fatalf("--help exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := run(t, []string{"version"}, nil)
	if code != ExitOK || !strings.HasPrefix(out, "nixos-cloud-deploy ") {
		t.Fatalf("exit %d, %q", code, out)
	}
}

// TestBinaryInActionMode builds cmd/action and runs it as GitHub does: inputs
// as INPUT_* variables, outputs and summary through files.
func TestBinaryInActionMode(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "action")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/action")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	secretKey, err := keys.New(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	const clientSecret = "Sup3r~Secret.Value_123"

	t.Run("plan", func(t *testing.T) {
		dir := t.TempDir()
		output, summary := filepath.Join(dir, "output"), filepath.Join(dir, "summary")
		env := []string{
			"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + output, "GITHUB_STEP_SUMMARY=" + summary,
			"GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=me/infra", "GITHUB_RUN_ID=7",
			"INPUT_COMMAND=plan", "INPUT_VM-NAME=web-01", "INPUT_LOCATION=", "INPUT_SSH-PUBLIC-KEYS=" + testPub,
			"INPUT_AZURE-CLIENT-SECRET=" + clientSecret,
			"INPUT_CONFIG-REPO=git@github.com:me/cfg.git",
			"INPUT_GITHUB-SSH-KEY=" + string(secretKey.PrivatePEM),
			"PATH=" + os.Getenv("PATH"),
		}
		stdout, stderr, code := runBin(t, bin, env)
		if code != ExitOK {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		sum, err := os.ReadFile(summary)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"## Plan: deploy `web-01`", "me/infra/actions/runs/7", "uksouth"} {
			if !strings.Contains(string(sum), want) {
				t.Errorf("summary lacks %q:\n%s", want, sum)
			}
		}
		if !strings.Contains(stdout, "::group::Plan") {
			t.Errorf("stdout lacks the plan group:\n%s", stdout)
		}
		// Every secret is masked, line by line, before anything else prints.
		firstMask := strings.Index(stdout, "::add-mask::")
		if firstMask != 0 {
			t.Errorf("the first thing printed must be a mask, got %q", stdout[:min(80, len(stdout))])
		}
		if !strings.Contains(stdout, "::add-mask::"+clientSecret+"\n") {
			t.Error("client secret not masked")
		}
		for _, line := range strings.Split(strings.TrimSpace(string(secretKey.PrivatePEM)), "\n") {
			if !strings.Contains(stdout, "::add-mask::"+line+"\n") {
				t.Errorf("key line %q not masked", line)
			}
		}
		// Beyond the masks, no secret appears anywhere.
		rest := stdout[strings.LastIndex(stdout, "::add-mask::"):]
		rest = rest[strings.Index(rest, "\n"):]
		assertNoSecret(t, "stdout", rest+stderr+string(sum), clientSecret, string(secretKey.PrivatePEM))
	})

	t.Run("bad input", func(t *testing.T) {
		dir := t.TempDir()
		summary := filepath.Join(dir, "summary")
		env := []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT=" + filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY=" + summary,
			"INPUT_VM-NAME=Az_Nixos!", "INPUT_SIZE=Standard_A0", "INPUT_AZURE-CLIENT-SECRET=" + clientSecret, "PATH=" + os.Getenv("PATH")}
		stdout, stderr, code := runBin(t, bin, env)
		if code != ExitBadInput {
			t.Fatalf("exit %d, want %d\n%s%s", code, ExitBadInput, stdout, stderr)
		}
		for _, want := range []string{`::error title=invalid input::vm-name "Az_Nixos!": must be`, `size "Standard_A0"`} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
		sum, _ := os.ReadFile(summary)
		if !strings.Contains(string(sum), "Nothing was created") {
			t.Errorf("summary:\n%s", sum)
		}
		if _, err := os.Stat(filepath.Join(dir, "output")); err == nil {
			b, _ := os.ReadFile(filepath.Join(dir, "output"))
			if len(b) > 0 {
				t.Errorf("outputs set on bad input: %s", b)
			}
		}
	})
}

func runBin(t *testing.T, bin string, env []string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func assertNoSecret(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, line := range strings.Split(s, "\n") {
			line = strings.TrimSpace(line)
			if len(line) < 8 || strings.HasPrefix(line, "-----") {
				continue
			}
			if strings.Contains(text, line) {
				t.Errorf("%s contains a secret line %q", where, line)
			}
		}
	}
}

// TestUnknownLocationIsAWarning: a location this version does not know is
// used, with a warning naming the nearest known one (new regions appear).
func TestUnknownLocationIsAWarning(t *testing.T) {
	t.Parallel()
	code, out, errs := run(t, []string{"plan", "-n", "web-01", "-l", "uksouht"}, nil)
	if code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	if !strings.Contains(out+errs, `location "uksouht" is not a region this version knows; did you mean "uksouth"?`) {
		t.Errorf("no warning:\n%s\n%s", out, errs)
	}
}
