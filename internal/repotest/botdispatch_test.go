package repotest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dispatchInputKeys returns the keys of every `Inputs: map[...]...{...}`
// literal in the Go files of dir (tests excluded): the inputs the bot sends
// when it dispatches the deploy workflow.
func dispatchInputKeys(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("failed to parse %s: %v", name, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			kv, ok := n.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if id, ok := kv.Key.(*ast.Ident); !ok || id.Name != "Inputs" {
				return true
			}
			lit, ok := kv.Value.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if _, ok := lit.Type.(*ast.MapType); !ok {
				return true
			}
			for _, e := range lit.Elts {
				if ekv, ok := e.(*ast.KeyValueExpr); ok {
					if bl, ok := ekv.Key.(*ast.BasicLit); ok && bl.Kind == token.STRING {
						if k, err := strconv.Unquote(bl.Value); err == nil {
							keys = append(keys, k)
						}
					}
				}
			}
			return true
		})
	}
	return keys
}

// botDispatchProblems: GitHub answers 422 "Unexpected inputs provided" to a
// dispatch with an input the workflow does not declare, so every input the
// bot sends must be a workflow_dispatch input of deploy.yml.
func botDispatchProblems(keys []string, deploySrc string) []string {
	w, err := parseWorkflow(deploySrc)
	if err != nil {
		return []string{err.Error()}
	}
	if w.On.WorkflowDispatch == nil {
		return []string{"deploy.yml has no workflow_dispatch trigger for the bot"}
	}
	if len(keys) == 0 {
		return []string{"found no `Inputs: map[string]any{...}` dispatch literal in internal/bot"}
	}
	var problems []string
	for _, k := range keys {
		if _, ok := w.On.WorkflowDispatch.Inputs[k]; !ok {
			problems = append(problems, fmt.Sprintf("the bot dispatches input %q, which deploy.yml's workflow_dispatch does not declare", k))
		}
	}
	if !slices.Contains(keys, "correlation-id") {
		problems = append(problems, "the bot does not send correlation-id, which the run name carries")
	}
	// Older GitHub Enterprise Server refuses more than 10 dispatch inputs.
	if len(keys) > 10 {
		problems = append(problems, fmt.Sprintf("the bot sends %d inputs; at most 10 work on older GitHub Enterprise Server", len(keys)))
	}
	return problems
}

func TestBotDispatchesDeployInputs(t *testing.T) {
	t.Parallel()
	keys := dispatchInputKeys(t, filepath.Join(root, "internal", "bot"))
	// deploy.yml for a GitHub App, chatops-deploy.yml for chatops.yml.
	for _, wf := range []string{"deploy.yml", "chatops-deploy.yml"} {
		reportProblems(t, "internal/bot against "+wf, botDispatchProblems(keys, readRepoFile(t, ".github/workflows/"+wf)))
	}
}

func TestBotDispatchChecksCanFail(t *testing.T) {
	t.Parallel()
	deploy := readRepoFile(t, ".github/workflows/deploy.yml")
	expectProblems(t, botDispatchProblems([]string{"vm-name", "region", "correlation-id"}, deploy), `"region"`)
	expectProblems(t, botDispatchProblems([]string{"vm-name"}, deploy), "correlation-id")
	expectProblems(t, botDispatchProblems(nil, deploy), "found no")
	expectProblems(t, botDispatchProblems(strings.Fields("a b c d e f g h i j correlation-id"), deploy), "at most 10")
}
