package bot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
	"go.yaml.in/yaml/v3"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"help"}, nil, ExitOK, "handle-event", ""},
		{"no command", nil, nil, ExitUsage, "", "Usage: bot <command>"},
		{"near miss", []string{"serv"}, nil, ExitUsage, "", `unknown command "serv"; did you mean "serve"?`},
		{"extra args", []string{"serve", "--port", "80"}, nil, ExitUsage, "", "serve takes no arguments"},
		{"serve without a secret", []string{"serve"}, map[string]string{"BOT_GITHUB_TOKEN": "t"}, ExitUsage, "", "BOT_WEBHOOK_SECRET (secret, value not shown): required for serve"},
		{"handle-event outside Actions", []string{"handle-event"}, nil, ExitUsage, "", "GITHUB_EVENT_PATH: required"},
		{"bad duration", []string{"serve"}, map[string]string{"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_TOKEN": "t", "BOT_MAX_COMMENT_AGE": "soon"}, ExitUsage, "", `BOT_MAX_COMMENT_AGE "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, envOf(tc.env), &stdout, &stderr)
			if code != tc.wantCode || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("run(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q", tc.args, code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}

// eventFile writes a real issue_comment payload (internal/bot/testdata)
// for a comment of the fake.
func eventFile(t *testing.T, srv *ghapitest.Server, body string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/issue_comment.created.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	c := srv.AddComment("Codertocat/Hello-World", 1, "Codertocat", body, time.Now())
	cm := m["comment"].(map[string]any)
	cm["id"], cm["body"], cm["created_at"] = c.ID, body, c.CreatedAt.UTC().Format(time.RFC3339)
	b, _ = json.Marshal(m)
	path := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestWorkflowModeLifecycle is ChatOps without a server: chatops.yml's
// handle-event dispatches and exits at once (nothing polls the run), and
// chatops-deploy.yml's report job ends the status comment from the deploy
// job's result and outputs. Everything the bot writes is by
// github-actions[bot], the GITHUB_TOKEN's login.
func TestWorkflowModeLifecycle(t *testing.T) {
	t.Parallel()
	for _, result := range []string{"success", "failure", "cancelled"} {
		t.Run(result, func(t *testing.T) {
			t.Parallel()
			srv := ghapitest.New(t)
			srv.ActionsToken = "ghs_actions"
			srv.AddRepo("Codertocat/Hello-World", "master")
			srv.SetPermission("Codertocat/Hello-World", "Codertocat", "write")
			// The real chatops-deploy.yml's inputs, on a server that takes
			// at most 10 (older GitHub Enterprise Server).
			srv.SetDispatchInputs("Codertocat/Hello-World", "chatops-deploy.yml", dispatchInputs(t, "chatops-deploy.yml")...)
			srv.MaxDispatchInputs = 10
			path := eventFile(t, srv, "/deploy az-nixos")
			actions := map[string]string{"GITHUB_TOKEN": "ghs_actions", "GITHUB_API_URL": srv.URL + "/api/v3", "GITHUB_REPOSITORY": "Codertocat/Hello-World",
				"BOT_WORKFLOW": "chatops-deploy.yml"} // as chatops.yml sets it
			with := func(kv ...string) map[string]string {
				m := maps.Clone(actions)
				for i := 0; i < len(kv); i += 2 {
					m[kv[i]] = kv[i+1]
				}
				return m
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"handle-event"}, envOf(with("GITHUB_EVENT_PATH", path, "GITHUB_EVENT_NAME", "issue_comment")), &stdout, &stderr)
			if code != ExitOK || !strings.Contains(stdout.String(), "its last job updates the status comment") {
				t.Fatalf("handle-event = %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			if n := srv.Calls("GET /repos/{owner}/{repo}/actions/runs/{id}"); n != 0 {
				t.Errorf("handle-event polled the run %d times; it must exit after the dispatch", n)
			}
			ds := srv.Dispatches("Codertocat/Hello-World")
			if len(ds) != 1 {
				t.Fatalf("%d dispatches, want 1", len(ds))
			}
			id := ds[0].RunID
			srv.SetRun("Codertocat/Hello-World", id, "in_progress", "", time.Now())
			stdout.Reset()
			stderr.Reset()
			code = Main(context.Background(), []string{"report"}, envOf(with("GITHUB_RUN_ID", fmt.Sprint(id), "BOT_DEPLOY_RESULT", result,
				"BOT_SSH_HOST_KEY", testHostKey, "BOT_FQDN", "az-nixos.uksouth.cloudapp.azure.com")), &stdout, &stderr)
			if code != ExitOK {
				t.Fatalf("report = %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			var status []ghapitest.Comment
			for _, c := range srv.Comments("Codertocat/Hello-World", 1) {
				if strings.Contains(c.Body, "<!-- nixos-cloud-deploy:") {
					status = append(status, c)
				}
			}
			wantState := map[string]string{"success": "state=succeeded", "failure": "state=failed", "cancelled": "state=cancelled"}[result]
			if len(status) != 1 || status[0].User != ghapitest.ActionsLogin || !strings.Contains(status[0].Body, wantState) {
				t.Fatalf("status comments = %+v, want one by %s with %s", status, ghapitest.ActionsLogin, wantState)
			}
			if result == "success" && !strings.Contains(status[0].Body, "| Host key | `"+testHostKey+"`") {
				t.Errorf("the host key from the deploy job's output is missing:\n%s", status[0].Body)
			}
			// A whole deploy costs a handful of API calls, not hundreds.
			t.Logf("%d API calls for the whole deploy", srv.TotalCalls())
			if n := srv.TotalCalls(); n > 15 {
				t.Errorf("%d API calls for one deploy, want at most 15", n)
			}
		})
	}
}

// dispatchInputs are a workflow's workflow_dispatch inputs.
func dispatchInputs(t testing.TB, workflow string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", workflow))
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		On struct {
			Dispatch struct {
				Inputs map[string]any `yaml:"inputs"`
			} `yaml:"workflow_dispatch"`
		} `yaml:"on"`
	}
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(w.On.Dispatch.Inputs))
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeStartsAndStops(t *testing.T) {
	t.Parallel()
	srv := ghapitest.New(t)
	srv.AddRepo("Codertocat/Hello-World", "master")
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"serve"}, envOf(map[string]string{
			"BOT_LISTEN_ADDR": "127.0.0.1:0", "BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_TOKEN": "t", "BOT_GITHUB_API_URL": srv.URL,
		}), io.Discard, &stderr)
	}()
	addrRE := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	var addr string
	for addr == "" {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(line, "ok") {
		t.Fatalf("healthz: %d %q", resp.StatusCode, line)
	}
	// An unsigned delivery is refused.
	resp, err = http.Post("http://"+addr+"/webhook", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d, want 401", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
	}
	for _, want := range []string{`"msg":"shutting down`, `"msg":"stopped"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, stderr.String())
		}
	}
}

// TestServeAsAppAsksForFailedDeliveriesOnStart: a GitHub App server asks
// GitHub again, as soon as it starts, for a delivery that failed while it
// was down; a token server has no deliveries to ask for.
func TestServeAsAppAsksForFailedDeliveriesOnStart(t *testing.T) {
	t.Parallel()
	srv := ghapitest.New(t)
	srv.AddRepo("Codertocat/Hello-World", "master")
	srv.AddDelivery(ghapitest.Delivery{GUID: "lost", Event: "issue_comment", Action: "created", StatusCode: 0,
		DeliveredAt: time.Now().Add(-time.Minute)}, []byte(`{}`))
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- Main(ctx, []string{"serve"}, envOf(map[string]string{
			"BOT_LISTEN_ADDR": "127.0.0.1:0", "BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_APP_ID": "1",
			"BOT_GITHUB_APP_PRIVATE_KEY": string(pemKey), "BOT_GITHUB_API_URL": srv.URL,
		}), io.Discard, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for srv.Calls("POST /app/hook/deliveries/{id}/attempts") == 0 {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no redelivery asked for:\n%s", stderr.String())
		}
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "the bot comments as nixos-cloud-deploy[bot]") {
		t.Errorf("log does not name the App's login:\n%s", stderr.String())
	}
}
