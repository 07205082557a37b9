package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/ghapi/ghapitest"
)

func env(m map[string]string) func(string) (string, bool) {
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
		{"help", []string{"help"}, nil, exitOK, "handle-event", ""},
		{"no command", nil, nil, exitUsage, "", "Usage: bot <command>"},
		{"near miss", []string{"serv"}, nil, exitUsage, "", `unknown command "serv"; did you mean "serve"?`},
		{"extra args", []string{"serve", "--port", "80"}, nil, exitUsage, "", "serve takes no arguments"},
		{"serve without a secret", []string{"serve"}, map[string]string{"BOT_GITHUB_TOKEN": "t"}, exitUsage, "", "BOT_WEBHOOK_SECRET (secret, value not shown): required for serve"},
		{"handle-event outside Actions", []string{"handle-event"}, nil, exitUsage, "", "GITHUB_EVENT_PATH: required"},
		{"bad duration", []string{"serve"}, map[string]string{"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_TOKEN": "t", "BOT_MAX_COMMENT_AGE": "soon"}, exitUsage, "", `BOT_MAX_COMMENT_AGE "soon"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, env(tc.env), &stdout, &stderr)
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
	b, err := os.ReadFile("../../internal/bot/testdata/issue_comment.created.json")
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

func TestHandleEventFollowsTheRun(t *testing.T) {
	t.Parallel()
	for _, conclusion := range []string{"success", "failure"} {
		t.Run(conclusion, func(t *testing.T) {
			t.Parallel()
			srv := ghapitest.New(t)
			srv.Token = "ghs_actions"
			srv.AddRepo("Codertocat/Hello-World", "master")
			srv.SetPermission("Codertocat/Hello-World", "Codertocat", "write")
			path := eventFile(t, srv, "/deploy az-nixos")
			go func() { // the deploy workflow, as seen through the API
				for len(srv.Dispatches("Codertocat/Hello-World")) == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				id := srv.Dispatches("Codertocat/Hello-World")[0].RunID
				srv.SetRun("Codertocat/Hello-World", id, "in_progress", "", time.Now())
				srv.SetRun("Codertocat/Hello-World", id, "completed", conclusion, time.Now().Add(time.Minute))
			}()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"handle-event"}, env(map[string]string{
				"GITHUB_EVENT_PATH": path, "GITHUB_EVENT_NAME": "issue_comment", "GITHUB_TOKEN": "ghs_actions",
				"GITHUB_API_URL": srv.URL + "/api/v3", "GITHUB_REPOSITORY": "Codertocat/Hello-World", "BOT_POLL_INTERVAL": "1s",
			}), &stdout, &stderr)
			want := map[string]int{"success": exitOK, "failure": exitFailed}[conclusion]
			if code != want || !strings.Contains(stdout.String(), "ended: "+conclusion) {
				t.Fatalf("run() = %d, want %d\nstdout: %s\nstderr: %s", code, want, stdout.String(), stderr.String())
			}
			var status []string
			for _, c := range srv.Comments("Codertocat/Hello-World", 1) {
				if strings.Contains(c.Body, "<!-- nixos-cloud-deploy:") {
					status = append(status, c.Body)
				}
			}
			wantState := map[string]string{"success": "state=succeeded", "failure": "state=failed"}[conclusion]
			if len(status) != 1 || !strings.Contains(status[0], wantState) {
				t.Errorf("status comments = %q, want one with %s", status, wantState)
			}
		})
	}
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
		done <- run(ctx, []string{"serve"}, env(map[string]string{
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
	if code := <-done; code != exitOK {
		t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
	}
	for _, want := range []string{`"msg":"shutting down`, `"msg":"stopped"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, stderr.String())
		}
	}
}
