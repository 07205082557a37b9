package repotest

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/bot"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
)

// scalar is any YAML scalar as its text (false, 64 and "64" are all text to
// GitHub's inputs and with: values).
type scalar string

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a scalar, got a %v", n.Line, n.Kind)
	}
	*s = scalar(n.Value)
	return nil
}

type workflow struct {
	Name        string            `yaml:"name"`
	RunName     string            `yaml:"run-name"`
	On          triggers          `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Concurrency struct {
		Group            string  `yaml:"group"`
		CancelInProgress *scalar `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Jobs map[string]job `yaml:"jobs"`
}

type triggers struct {
	WorkflowDispatch *struct {
		Inputs map[string]workflowInput `yaml:"inputs"`
	} `yaml:"workflow_dispatch"`
	WorkflowCall *struct {
		Inputs  map[string]workflowInput `yaml:"inputs"`
		Secrets map[string]struct {
			Required bool `yaml:"required"`
		} `yaml:"secrets"`
		Outputs map[string]struct {
			Value string `yaml:"value"`
		} `yaml:"outputs"`
	} `yaml:"workflow_call"`
	IssueComment *struct {
		Types []string `yaml:"types"`
	} `yaml:"issue_comment"`
	Push *struct {
		Tags []string `yaml:"tags"`
	} `yaml:"push"`
}

type workflowInput struct {
	Required bool     `yaml:"required"`
	Type     string   `yaml:"type"`
	Default  *scalar  `yaml:"default"`
	Options  []string `yaml:"options"`
}

type job struct {
	If             string            `yaml:"if"`
	Needs          stringList        `yaml:"needs"`
	Environment    environment       `yaml:"environment"`
	TimeoutMinutes int               `yaml:"timeout-minutes"`
	Permissions    map[string]string `yaml:"permissions"`
	Outputs        map[string]string `yaml:"outputs"`
	Steps          []step            `yaml:"steps"`
	// A job that calls a reusable workflow.
	Uses    string            `yaml:"uses"`
	With    map[string]scalar `yaml:"with"`
	Secrets scalar            `yaml:"secrets"`
}

// stringList is a YAML string or list of strings (needs: a or needs: [a, b]).
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = []string{n.Value}
		return nil
	}
	var ss []string
	err := n.Decode(&ss)
	*l = ss
	return err
}

// environment is a job's environment: a name, or {name, url}.
type environment string

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*e = environment(n.Value)
		return nil
	}
	var m struct {
		Name string `yaml:"name"`
	}
	err := n.Decode(&m)
	*e = environment(m.Name)
	return err
}

type step struct {
	ID   string            `yaml:"id"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]scalar `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func parseWorkflow(src string) (workflow, error) {
	var w workflow
	err := yaml.Unmarshal([]byte(src), &w)
	return w, err
}

// steps returns every step of every job, jobs in name order.
func (w workflow) steps() []step {
	var names []string
	for n := range w.Jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []step
	for _, n := range names {
		out = append(out, w.Jobs[n].Steps...)
	}
	return out
}

func workflowFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflows under .github/workflows: %v", err)
	}
	for i, f := range files {
		files[i], _ = filepath.Rel(root, f)
	}
	return files
}

// ---- deploy.yml: the action's inputs, secrets from secrets only ------------

// actionStepRE matches the step that runs this action: the released action
// (deploy.yml is also a reusable workflow, where ./ would be the caller's
// checkout) or the local one.
var actionStepRE = regexp.MustCompile(`^(?:nixos-cloud-deploy/nixos-cloud-deploy@\S+|\./?)$`)

// fromRepoSettings are inputs deploy.yml takes from the repository's
// secrets or variables, not from its own inputs: the Azure identity is set
// up once per repository.
var fromRepoSettings = map[string]string{
	"azure-client-id":       "AZURE_CLIENT_ID",
	"azure-tenant-id":       "AZURE_TENANT_ID",
	"azure-subscription-id": "AZURE_SUBSCRIPTION_ID",
}

// fromRepoVariables are inputs deploy.yml takes from the repository's
// variables only, never from an input: the cloud's endpoints decide where the
// Azure credential is sent, so whoever may dispatch the workflow must not
// choose them (issue 16).
var fromRepoVariables = map[string]string{
	"azure-environment":   "AZURE_ENVIRONMENT",
	"arm-endpoint":        "ARM_ENDPOINT",
	"azure-oidc-audience": "AZURE_OIDC_AUDIENCE",
}

// callOnly are inputs only a caller of the reusable workflow passes:
// GitHub accepts at most 25 workflow_dispatch inputs (changelog
// 2025-12-04; 10 before, and on GHES releases that predate it), so a manual
// run or the bot reads these from repository variables instead
// (inputs.X || vars.NAME), or leaves them to the action's default.
var callOnly = map[string]string{
	"build-on":        "BUILD_ON",
	"confirm-timeout": "CONFIRM_TIMEOUT",
}

// maxDispatchInputs is GitHub's limit on workflow_dispatch inputs.
const maxDispatchInputs = 25

var secretRefRE = regexp.MustCompile(`^\$\{\{\s*secrets\.([A-Za-z0-9_]+)\s*\}\}$`)

func deployWorkflowProblems(src string, defs []config.Input, outs []config.Output) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	// The bot finds its run by the correlation id in the run name.
	for _, ref := range []string{"inputs.vm-name", "inputs.correlation-id"} {
		if !strings.Contains(w.RunName, ref) {
			add("run-name %q does not show %s", w.RunName, ref)
		}
	}
	// Two deploys of one VM queue instead of racing.
	if !strings.Contains(w.Concurrency.Group, "inputs.vm-name") {
		add("concurrency.group %q is not per VM (inputs.vm-name)", w.Concurrency.Group)
	}
	if w.Concurrency.CancelInProgress == nil || *w.Concurrency.CancelInProgress != "false" {
		add("concurrency.cancel-in-progress must be false: a running install must never be cancelled by the next request")
	}
	if d := cmp.Diff(map[string]string{"id-token": "write", "contents": "read"}, w.Permissions); d != "" {
		add("permissions (-want +got):\n%s", d)
	}

	// The inputs of both triggers: the action's, without the secret ones
	// and the Azure identity (repository settings, and GitHub allows only
	// 25 workflow_dispatch inputs), with the same defaults, plus
	// correlation-id.
	type in struct{ Default string }
	want := map[string]in{"correlation-id": {}}
	for _, d := range defs {
		if !d.Secret && fromRepoSettings[d.Name] == "" && fromRepoVariables[d.Name] == "" {
			want[d.Name] = in{d.Default}
		}
	}
	check := func(trigger string, inputs map[string]workflowInput, types []string) {
		want := want
		if trigger == "workflow_dispatch" {
			want = maps.Clone(want)
			for name := range callOnly {
				delete(want, name)
			}
			if len(inputs) > maxDispatchInputs {
				add("workflow_dispatch has %d inputs; GitHub refuses more than %d (move rarely set ones to callOnly)", len(inputs), maxDispatchInputs)
			}
		}
		got := map[string]in{}
		for name, i := range inputs {
			def := ""
			if i.Default != nil {
				def = string(*i.Default)
			}
			got[name] = in{def}
			if i.Required {
				add("%s input %q is required; every input has a default or is optional, as in action.yml", trigger, name)
			}
			if !slices.Contains(types, i.Type) {
				add("%s input %q has type %q, want one of %v", trigger, name, i.Type, types)
			}
			if i.Type == "choice" && !slices.Contains(i.Options, def) {
				add("%s input %q: default %q is not among options %v", trigger, name, def, i.Options)
			}
			if i.Type == "boolean" && def != "true" && def != "false" {
				add("%s input %q: boolean default %q", trigger, name, def)
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			add("%s inputs differ from config.Definitions minus secrets plus correlation-id (-want +got):\n%s", trigger, d)
		}
	}
	if w.On.WorkflowDispatch == nil {
		add("no workflow_dispatch trigger")
	} else {
		check("workflow_dispatch", w.On.WorkflowDispatch.Inputs, []string{"string", "choice", "boolean"})
	}
	if w.On.WorkflowCall == nil {
		add("no workflow_call trigger")
		return problems
	}
	check("workflow_call", w.On.WorkflowCall.Inputs, []string{"string", "boolean"})

	// The step that runs the action gets every input.
	var (
		act    *step
		jobID  string
		job    job
		nSteps int
	)
	for id, j := range w.Jobs {
		for i := range j.Steps {
			if actionStepRE.MatchString(j.Steps[i].Uses) {
				act, jobID, job = &j.Steps[i], id, j
				nSteps++
			}
		}
	}
	if nSteps != 1 {
		add("%d steps run the action, want 1", nSteps)
		return problems
	}
	problems = append(problems, destroyGateProblems(w, jobID, job)...)
	gotWith := map[string]bool{}
	for name := range act.With {
		gotWith[name] = true
	}
	wantWith := map[string]bool{}
	for _, d := range defs {
		wantWith[d.Name] = true
		v := string(act.With[d.Name])
		switch {
		case d.Secret:
			m := secretRefRE.FindStringSubmatch(v)
			if m == nil {
				add("with.%s = %q: a secret input must be exactly ${{ secrets.NAME }}", d.Name, v)
				break
			}
			if _, ok := w.On.WorkflowCall.Secrets[m[1]]; !ok {
				add("with.%s uses secrets.%s, which workflow_call.secrets does not declare", d.Name, m[1])
			}
		case fromRepoVariables[d.Name] != "":
			if want := "${{ vars." + fromRepoVariables[d.Name] + " }}"; v != want {
				add("with.%s = %q: want exactly %q, a repository variable (an input would let whoever dispatches choose where the Azure token goes)", d.Name, v, want)
			}
		case fromRepoSettings[d.Name] != "":
			if !strings.Contains(v, "secrets."+fromRepoSettings[d.Name]) || !strings.Contains(v, "vars."+fromRepoSettings[d.Name]) {
				add("with.%s = %q: want the repository's secrets.%[3]s or vars.%[3]s", d.Name, v, fromRepoSettings[d.Name])
			}
		case !strings.Contains(v, "inputs."+d.Name):
			add("with.%s = %q does not pass inputs.%s", d.Name, v, d.Name)
		case callOnly[d.Name] != "" && !strings.Contains(v, "vars."+callOnly[d.Name]):
			add("with.%s = %q: a manual run has no such input; want inputs.%s || vars.%s", d.Name, v, d.Name, callOnly[d.Name])
		}
	}
	if d := cmp.Diff(wantWith, gotWith); d != "" {
		add("the action step's with: keys differ from config.Definitions (-want +got):\n%s", d)
	}
	for s := range w.On.WorkflowCall.Secrets {
		if strings.HasPrefix(strings.ToUpper(s), "GITHUB_") {
			add("secret %s: GitHub refuses secret names that start with GITHUB_", s)
		}
	}

	// Outputs: the action's, through the job, to the caller.
	wantOut, gotOut, gotJobOut := map[string]string{}, map[string]string{}, map[string]string{}
	for _, o := range outs {
		wantOut[o.Name] = fmt.Sprintf("${{ jobs.%s.outputs.%s }}", jobID, o.Name)
		gotJobOut[o.Name] = job.Outputs[o.Name]
	}
	for name, o := range w.On.WorkflowCall.Outputs {
		gotOut[name] = o.Value
	}
	if d := cmp.Diff(wantOut, gotOut); d != "" {
		add("workflow_call outputs differ from config.Outputs (-want +got):\n%s", d)
	}
	for name, v := range gotJobOut {
		if want := fmt.Sprintf("${{ steps.%s.outputs.%s }}", act.ID, name); v != want {
			add("jobs.%s.outputs.%s = %q, want %q", jobID, name, v, want)
		}
	}
	return problems
}

// destroyGateProblems: /destroy's rule holds in the workflow itself. A
// destroy and a deploy with cleanup-on-failure (which deletes the resource
// group) run only after a job in the protected environment "destroy"
// passed; the action's job needs it and never runs a destroy without it.
func destroyGateProblems(w workflow, actionJobID string, actionJob job) []string {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	var gateID string
	for id, j := range w.Jobs {
		if j.Environment == "destroy" {
			gateID = id
		}
	}
	if gateID == "" {
		return []string{"no job in the environment \"destroy\": a destroy must wait for its required reviewers"}
	}
	gate := w.Jobs[gateID]
	for _, cond := range []string{"inputs.command == 'destroy'", "inputs.cleanup-on-failure"} {
		if !strings.Contains(gate.If, cond) {
			add("job %s: if %q does not run the gate for %s", gateID, gate.If, cond)
		}
	}
	if gate.Permissions["actions"] != "read" {
		add("job %s: needs permissions actions: read to check the environment's rules", gateID)
	}
	checks := false
	for _, st := range gate.Steps {
		if strings.Contains(st.Run, "environments/destroy") && strings.Contains(st.Run, "required_reviewers") && strings.Contains(st.Run, "admin") {
			checks = true
		}
	}
	if !checks {
		add("job %s: no step checks that the environment has required reviewers (or that an admin runs it)", gateID)
	}
	if !slices.Contains(actionJob.Needs, gateID) {
		add("job %s does not need the gate %s", actionJobID, gateID)
	}
	for _, cond := range []string{"needs." + gateID + ".result == 'success'", "needs." + gateID + ".result == 'skipped'",
		"inputs.command != 'destroy'", "!inputs.cleanup-on-failure", "!cancelled()"} {
		if !strings.Contains(actionJob.If, cond) {
			add("job %s: if %q lacks %s: a destroy could run without the gate", actionJobID, actionJob.If, cond)
		}
	}
	return problems
}

func TestDeployWorkflowMatchesAction(t *testing.T) {
	t.Parallel()
	reportProblems(t, "deploy.yml", deployWorkflowProblems(readRepoFile(t, ".github/workflows/deploy.yml"), config.Definitions(), config.Outputs()))
}

func TestDeployWorkflowChecksCanFail(t *testing.T) {
	t.Parallel()
	src := readRepoFile(t, ".github/workflows/deploy.yml")
	defs, outs := config.Definitions(), config.Outputs()
	if p := deployWorkflowProblems(src, defs, outs); len(p) != 0 {
		t.Fatalf("the real deploy.yml: %q", p)
	}
	withExtra := append(slices.Clone(defs), config.Input{Name: "new-input", Default: "x"})
	withoutLocation := slices.DeleteFunc(slices.Clone(defs), func(d config.Input) bool { return d.Name == "location" })
	changedDefault := slices.Clone(defs)
	for i := range changedDefault {
		if changedDefault[i].Name == "size" {
			changedDefault[i].Default = "Standard_D2s_v5"
		}
	}
	extraOutput := append(slices.Clone(outs), config.Output{Name: "new-output"})
	tests := []struct {
		name string
		src  string
		defs []config.Input
		outs []config.Output
		want string
	}{
		{"action gained an input", src, withExtra, outs, `"new-input"`},
		{"action lost an input", src, withoutLocation, outs, `"location"`},
		{"action default changed", src, changedDefault, outs, "Standard_D2s_v5"},
		{"action gained an output", src, defs, extraOutput, "new-output"},
		{"secret from an input", mustReplace(t, src, "${{ secrets.AZURE_CLIENT_SECRET }}", "${{ inputs.azure-client-secret }}"), defs, outs, "exactly ${{ secrets.NAME }}"},
		{"cancel in progress", mustReplace(t, src, "cancel-in-progress: false", "cancel-in-progress: true"), defs, outs, "cancel-in-progress"},
		{"one group for all VMs", mustReplace(t, src, "group: deploy-${{ inputs.vm-name }}", "group: deploy"), defs, outs, "not per VM"},
		{"no correlation id", mustReplace(t, src, "run-name: deploy ${{ inputs.vm-name }} [${{ inputs.correlation-id }}]", "run-name: deploy ${{ inputs.vm-name }}"), defs, outs, "inputs.correlation-id"},
		{"no OIDC", mustReplace(t, src, "  id-token: write\n", ""), defs, outs, "permissions"},
		{"no gate", mustReplace(t, src, "    environment: destroy\n", ""), defs, outs, `no job in the environment "destroy"`},
		{"gate only for destroy", mustReplace(t, src, "if: inputs.command == 'destroy' || inputs.cleanup-on-failure", "if: inputs.command == 'destroy'"), defs, outs, "inputs.cleanup-on-failure"},
		{"deploy without the gate", mustReplace(t, src, "    needs: gate\n", ""), defs, outs, "does not need the gate"},
		{"gate skipped for destroy", mustReplace(t, src, "needs.gate.result == 'skipped' && inputs.command != 'destroy' && ", "needs.gate.result == 'skipped' && "), defs, outs, "inputs.command != 'destroy'"},
		{"gate checks nothing", mustReplace(t, src, "required_reviewers", "wait_timer"), defs, outs, "no step checks"},
		{"arm-endpoint from an input", mustReplace(t, src, "arm-endpoint: ${{ vars.ARM_ENDPOINT }}", "arm-endpoint: ${{ inputs.arm-endpoint || vars.ARM_ENDPOINT }}"), defs, outs, "with.arm-endpoint"},
		{"azure-environment as a dispatch input", mustReplace(t, src, "  workflow_dispatch:\n    inputs:\n", "  workflow_dispatch:\n    inputs:\n      azure-environment:\n        type: string\n        required: false\n"), defs, outs, "azure-environment"},
		{"call-only input without its variable", mustReplace(t, src, "${{ inputs.build-on || vars.BUILD_ON }}", "${{ inputs.build-on }}"), defs, outs, "vars.BUILD_ON"},
		{"too many dispatch inputs", strings.Replace(src, "      correlation-id:", "      build-on:\n        type: string\n        default: local\n      confirm-timeout:\n        type: string\n        default: 60s\n      correlation-id:", 1), defs, outs, "GitHub refuses more than 25"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, deployWorkflowProblems(tc.src, tc.defs, tc.outs), tc.want)
		})
	}
}

// ---- every workflow: pinned actions, no expressions in run: ---------------

var (
	usesLineRE = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+)\s*(?:#\s*(.*))?$`)
	shaRefRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@([0-9a-f]{40})$`)
	versionRE  = regexp.MustCompile(`^v[0-9]+(\.[0-9]+){0,2}$`)
	// This project's own action by its major tag: the release moves the tag
	// to a commit whose action.yml pins the image by digest.
	ownActionRE = regexp.MustCompile(`^nixos-cloud-deploy/nixos-cloud-deploy@v[0-9]+$`)
)

// pinProblems: every third-party action is pinned by a full commit SHA with
// its version in a comment; shas maps action to the SHA seen, so one action
// is pinned to one commit across all workflows.
func pinProblems(file, src string, shas map[string]string) []string {
	var problems []string
	for i, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		m := usesLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ref, comment := m[1], strings.TrimSpace(m[2])
		where := fmt.Sprintf("%s:%d: %s", file, i+1, ref)
		switch {
		case strings.HasPrefix(ref, "./"):
		case strings.HasPrefix(ref, "docker://"):
			if !digestRE.MatchString(ref) {
				problems = append(problems, where+": a docker:// image must be pinned by @sha256 digest")
			}
		case ownActionRE.MatchString(ref):
		default:
			sm := shaRefRE.FindStringSubmatch(ref)
			if sm == nil {
				problems = append(problems, where+": pin by full commit SHA (owner/repo@<40 hex> # vX.Y.Z), tags move")
				continue
			}
			if !versionRE.MatchString(comment) {
				problems = append(problems, fmt.Sprintf("%s: the comment %q must name the version the SHA is (# vX.Y.Z)", where, comment))
			}
			action, _, _ := strings.Cut(ref, "@")
			if prev, ok := shas[action]; ok && prev != sm[1] {
				problems = append(problems, fmt.Sprintf("%s: pinned to %s here and %s elsewhere; use one", where, sm[1], prev))
			}
			shas[action] = sm[1]
		}
	}
	return problems
}

// runProblems: no ${{ }} inside a run: script. An expression is pasted into
// the script before the shell parses it, so a value an attacker controls (a
// comment body, a branch name) or a secret would become shell code or land in
// the log; values reach scripts through env: instead.
func runProblems(file, src string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var problems []string
	for _, s := range w.steps() {
		if strings.Contains(s.Run, "${{") {
			problems = append(problems, fmt.Sprintf("%s: run: %q has a ${{ }} expression; pass the value through env:", file, abbreviate(s.Run)))
		}
	}
	return problems
}

func TestWorkflowsPinActionsAndKeepExpressionsOutOfRun(t *testing.T) {
	t.Parallel()
	shas := map[string]string{}
	for _, f := range workflowFiles(t) {
		src := readRepoFile(t, f)
		reportProblems(t, f, pinProblems(f, src, shas))
		reportProblems(t, f, runProblems(f, src))
	}
	for _, a := range []string{"actions/checkout", "actions/setup-go", "docker/login-action", "docker/build-push-action", "docker/setup-buildx-action"} {
		if _, ok := shas[a]; !ok {
			t.Errorf("no workflow uses %s; the release and CI need it", a)
		}
	}
}

func TestWorkflowChecksCanFail(t *testing.T) {
	t.Parallel()
	sha := strings.Repeat("a", 40)
	tests := []struct {
		name, src, want string
		check           func(file, src string) []string
	}{
		{"tag", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v7\n", "pin by full commit SHA", nil},
		{"branch", "jobs:\n  a:\n    steps:\n      - uses: docker/login-action@main\n", "pin by full commit SHA", nil},
		{"no version comment", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@" + sha + "\n", "must name the version", nil},
		{"two SHAs", "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@" + sha + " # v7.0.1\n      - uses: actions/checkout@" + strings.Repeat("b", 40) + " # v7.0.0\n", "use one", nil},
		{"docker by tag", "jobs:\n  a:\n    steps:\n      - uses: docker://alpine:3\n", "pinned by @sha256", nil},
		{"secret in run", "jobs:\n  a:\n    steps:\n      - run: echo ${{ secrets.X }}\n", "pass the value through env", runProblems},
		{"comment body in run", "jobs:\n  a:\n    steps:\n      - run: |\n          echo \"${{ github.event.comment.body }}\"\n", "pass the value through env", runProblems},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := tc.check
			if check == nil {
				check = func(file, src string) []string { return pinProblems(file, src, map[string]string{}) }
			}
			expectProblems(t, check("test.yml", tc.src), tc.want)
		})
	}
}

// ---- ci.yml, chatops.yml, release.yml: the parts others rely on -----------

func ciProblems(src string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var plan, makeTest, deps bool
	for _, s := range w.steps() {
		if s.Uses == "./" && s.With["command"] == "plan" {
			plan = true
		}
		if strings.TrimSpace(s.Run) == "make test" {
			makeTest = true
		}
		if strings.TrimSpace(s.Run) == "bash scripts/deps.sh" {
			deps = true
		}
		if strings.HasPrefix(s.Uses, "actions/setup-go@") && s.With["go-version-file"] != "go.mod" && !strings.HasPrefix(string(s.With["go-version"]), "1.26") {
			problems = append(problems, "setup-go must take Go from go.mod (go-version-file: go.mod) or 1.26")
		}
	}
	if !plan {
		problems = append(problems, "no step runs the action from ./ with command: plan (actionlint checks action.yml through it)")
	}
	if !makeTest || !deps {
		problems = append(problems, "no steps `bash scripts/deps.sh` and `make test`")
	}
	return problems
}

// chatopsProblems: workflows maps the workflow files to their sources; the
// bot dispatches one of them (BOT_WORKFLOW, default deploy.yml).
func chatopsProblems(src string, workflows map[string]string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if w.On.IssueComment == nil || !slices.Equal(w.On.IssueComment.Types, []string{"created"}) {
		add("on.issue_comment.types must be [created]: edits and deletions are not commands")
	}
	// No checks: read: handle-event reads no annotations.
	if d := cmp.Diff(map[string]string{"issues": "write", "actions": "write", "contents": "read"}, w.Permissions); d != "" {
		add("permissions (-want +got):\n%s", d)
	}
	bot := 0
	for name, j := range w.Jobs {
		for _, s := range j.Steps {
			if !strings.Contains(s.Run, "go run ./cmd/bot handle-event") {
				continue
			}
			bot++
			if !strings.Contains(j.If, "startsWith(github.event.comment.body, '/')") {
				add("job %s: if %q does not limit comments to those starting with /", name, j.If)
			}
			problems = append(problems, timeoutProblems(name, j)...)
			if s.Env["GITHUB_TOKEN"] == "" {
				add("the bot step has no GITHUB_TOKEN in env")
			}
			wf := s.Env["BOT_WORKFLOW"]
			if wf == "" {
				wf = "deploy.yml"
			}
			target, ok := workflows[wf]
			if !ok {
				add("BOT_WORKFLOW %q is not a workflow of .github/workflows %v", wf, slices.Sorted(maps.Keys(workflows)))
				continue
			}
			problems = append(problems, chatopsDeployProblems(wf, target)...)
		}
	}
	if bot != 1 {
		add("%d steps run `go run ./cmd/bot handle-event`, want 1", bot)
	}
	return problems
}

// timeoutProblems: the bot gives up (and says so in its comment) before the
// job's timeout kills it.
func timeoutProblems(name string, j job) []string {
	if time.Duration(j.TimeoutMinutes)*time.Minute <= bot.ActionsDeadline {
		return []string{fmt.Sprintf("job %s: timeout-minutes %d is not longer than the bot's own deadline %v", name, j.TimeoutMinutes, bot.ActionsDeadline)}
	}
	return nil
}

// chatopsDeployProblems: the workflow a workflow-mode bot dispatches runs
// deploy.yml and then reports the run's end to the status comment from the
// deploy job's result and outputs: no follow-up poll, and a host key that
// comes from an output, not from a log line.
func chatopsDeployProblems(file, src string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{file + ": " + err.Error()}
	}
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(file+": "+format, a...)) }
	if w.On.WorkflowDispatch == nil {
		return []string{file + ": no workflow_dispatch trigger"}
	}
	// Older GitHub Enterprise Server accepts 10 workflow_dispatch inputs.
	if n := len(w.On.WorkflowDispatch.Inputs); n > 10 {
		add("%d workflow_dispatch inputs; at most 10, so that older GitHub Enterprise Server runs it", n)
	}
	for _, ref := range []string{"inputs.vm-name", "inputs.correlation-id"} {
		if !strings.Contains(w.RunName, ref) {
			add("run-name %q does not show %s", w.RunName, ref)
		}
	}
	var deployID, reportID string
	for id, j := range w.Jobs {
		if j.Uses == "./.github/workflows/deploy.yml" {
			deployID = id
		}
		for _, s := range j.Steps {
			if strings.Contains(s.Run, "go run ./cmd/bot report") {
				reportID = id
			}
		}
	}
	if deployID == "" || reportID == "" {
		add("want a job that calls ./.github/workflows/deploy.yml and one that runs `go run ./cmd/bot report`")
		return problems
	}
	d := w.Jobs[deployID]
	for in := range w.On.WorkflowDispatch.Inputs {
		if v := string(d.With[in]); v != "${{ inputs."+in+" }}" {
			add("job %s: with.%s = %q, want ${{ inputs.%s }}", deployID, in, v, in)
		}
	}
	for perm, want := range map[string]string{"id-token": "write", "contents": "read", "actions": "read"} {
		if d.Permissions[perm] != want {
			add("job %s: permissions.%s = %q, want %q (deploy.yml's and its gate's)", deployID, perm, d.Permissions[perm], want)
		}
	}
	r := w.Jobs[reportID]
	if !slices.Contains(r.Needs, deployID) || !strings.Contains(r.If, "always()") {
		add("job %s must need %s and run always(): a failed or refused deploy is reported too", reportID, deployID)
	}
	if r.Permissions["issues"] != "write" {
		add("job %s: permissions.issues must be write to edit the status comment", reportID)
	}
	// A switch's outcome is a notice annotation; a private repository's
	// annotations need checks: read (docs, permissions for GITHUB_TOKEN).
	if r.Permissions["checks"] != "read" {
		add("job %s: permissions.checks must be read: the bot reads a switch's notice", reportID)
	}
	problems = append(problems, timeoutProblems(reportID, r)...)
	for _, st := range r.Steps {
		if !strings.Contains(st.Run, "go run ./cmd/bot report") {
			continue
		}
		for k, want := range map[string]string{
			"BOT_DEPLOY_RESULT": "${{ needs." + deployID + ".result }}",
			"BOT_SSH_HOST_KEY":  "${{ needs." + deployID + ".outputs.ssh-host-key }}",
			"BOT_FQDN":          "${{ needs." + deployID + ".outputs.fqdn }}",
		} {
			if st.Env[k] != want {
				add("job %s: env %s = %q, want %q", reportID, k, st.Env[k], want)
			}
		}
		if st.Env["GITHUB_TOKEN"] == "" {
			add("job %s: the bot step has no GITHUB_TOKEN in env", reportID)
		}
	}
	return problems
}

// releaseImageLineRE is the line of action.yml the release rewrites, or its
// rewritten form on a release commit.
var releaseImageLineRE = regexp.MustCompile(`(?m)^  image: (Dockerfile|docker://ghcr\.io/\S+@sha256:[0-9a-f]{64})$`)

func releaseProblems(src, actionYML string) []string {
	w, err := parseWorkflow(src)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if w.On.Push == nil || !slices.Contains(w.On.Push.Tags, "v*") {
		problems = append(problems, "on.push.tags must include v*")
	}
	var build, rewrite bool
	public, move := -1, -1
	for i, s := range w.steps() {
		if strings.HasPrefix(s.Uses, "docker/build-push-action@") && s.With["push"] == "true" {
			build = true
			// A new GHCR package is private: the major tag (what @v1
			// users get) moves only once the image is public.
			if strings.Contains(string(s.With["tags"]), "outputs.major") {
				problems = append(problems, "build-push-action pushes the major tag before the image is known to be public")
			}
		}
		if strings.Contains(s.Run, "image: Dockerfile") && strings.Contains(s.Run, "docker://") && strings.Contains(s.Run, "git push") {
			rewrite, move = true, i
		}
		if strings.Contains(s.Run, "ghcr.io/token") && strings.Contains(s.Run, "/manifests/") && strings.Contains(s.Run, "exit 1") {
			public = i
		}
	}
	if public < 0 || move >= 0 && public > move {
		problems = append(problems, "no step checks that the image can be pulled anonymously before the tags move: a private GHCR package breaks every @v1 user")
	}
	if !build {
		problems = append(problems, "no docker/build-push-action step with push: true")
	}
	if !rewrite {
		problems = append(problems, "no step rewrites action.yml's `image: Dockerfile` to docker://...@digest and pushes the tags")
	}
	if n := len(releaseImageLineRE.FindAllString(actionYML, -1)); n != 1 {
		problems = append(problems, fmt.Sprintf("action.yml has %d lines `  image: Dockerfile` (or its released docker:// form), want 1: the release rewrites exactly that line", n))
	}
	return problems
}

// workflowSources maps each workflow's file name to its source.
func workflowSources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range workflowFiles(t) {
		out[filepath.Base(f)] = readRepoFile(t, f)
	}
	return out
}

func TestCIChatopsReleaseWorkflows(t *testing.T) {
	t.Parallel()
	names := workflowSources(t)
	reportProblems(t, "ci.yml", ciProblems(readRepoFile(t, ".github/workflows/ci.yml")))
	reportProblems(t, "chatops.yml", chatopsProblems(readRepoFile(t, ".github/workflows/chatops.yml"), names))
	reportProblems(t, "release.yml", releaseProblems(readRepoFile(t, ".github/workflows/release.yml"), readRepoFile(t, "action.yml")))
}

func TestCIChatopsReleaseChecksCanFail(t *testing.T) {
	t.Parallel()
	ci := readRepoFile(t, ".github/workflows/ci.yml")
	chatops := readRepoFile(t, ".github/workflows/chatops.yml")
	release := readRepoFile(t, ".github/workflows/release.yml")
	action := readRepoFile(t, "action.yml")
	names := workflowSources(t)
	with := func(file, old, new string) func(t *testing.T) []string {
		return func(t *testing.T) []string {
			m := maps.Clone(names)
			m[file] = mustReplace(t, m[file], old, new)
			return chatopsProblems(chatops, m)
		}
	}
	tests := []struct {
		name     string
		problems func(t *testing.T) []string
		want     string
	}{
		{"ci without plan", func(t *testing.T) []string {
			return ciProblems(mustReplace(t, ci, "command: plan", "command: deploy"))
		}, "command: plan"},
		{"chatops on edits", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "types: [created]", "types: [created, edited]"), names)
		}, "must be [created]"},
		{"chatops on every comment", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "startsWith(github.event.comment.body, '/')", "true"), names)
		}, "starting with /"},
		{"chatops dispatches a missing workflow", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "BOT_WORKFLOW: chatops-deploy.yml", "BOT_WORKFLOW: deploy-vm.yml"), names)
		}, `"deploy-vm.yml"`},
		{"chatops job times out before the bot", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "timeout-minutes: 15", "timeout-minutes: 10"), names)
		}, "not longer than the bot's own deadline"},
		{"chatops reads annotations it does not need", func(t *testing.T) []string {
			return chatopsProblems(mustReplace(t, chatops, "  contents: read\n", "  contents: read\n  checks: read\n"), names)
		}, "permissions"},
		{"host key from a log line", with("chatops-deploy.yml", "${{ needs.deploy.outputs.ssh-host-key }}", "${{ github.event.inputs.vm-name }}"), "BOT_SSH_HOST_KEY"},
		{"report only on success", with("chatops-deploy.yml", "${{ always() && inputs.correlation-id != '' }}", "${{ inputs.correlation-id != '' }}"), "run always()"},
		{"report cannot read notices", with("chatops-deploy.yml", "      checks: read\n", ""), "permissions.checks"},
		{"no report", with("chatops-deploy.yml", "run: go run ./cmd/bot report", "run: echo done"), "runs `go run ./cmd/bot report`"},
		{"too many inputs for old GHES", with("chatops-deploy.yml", "      correlation-id:\n", "      a1: {type: string}\n      a2: {type: string}\n      a3: {type: string}\n      a4: {type: string}\n      correlation-id:\n"), "at most 10"},
		{"release without rewrite", func(t *testing.T) []string {
			return releaseProblems(strings.ReplaceAll(release, "docker://", "oci://"), action)
		}, "rewrites action.yml"},
		{"public check after the tags move", func(t *testing.T) []string {
			return releaseProblems(mustReplace(t, release, "ghcr.io/token", "ghcr.io/nothing"), action)
		}, "pulled anonymously before the tags move"},
		{"major image tag pushed at once", func(t *testing.T) []string {
			return releaseProblems(mustReplace(t, release, "            ${{ steps.name.outputs.image }}:${{ github.ref_name }}\n",
				"            ${{ steps.name.outputs.image }}:${{ github.ref_name }}\n            ${{ steps.name.outputs.image }}:${{ steps.name.outputs.major }}\n"), action)
		}, "pushes the major tag"},
		{"action.yml image moved", func(t *testing.T) []string {
			return releaseProblems(release, mustReplace(t, action, "  image: Dockerfile", "  image: ./Dockerfile"))
		}, "want 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expectProblems(t, tc.problems(t), tc.want)
		})
	}
}
