package bot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const testPEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	got, err := LoadConfig(context.Background(), ModeServe, lookup(map[string]string{
		"BOT_WEBHOOK_SECRET": "s3cret", "BOT_GITHUB_APP_ID": "123", "BOT_GITHUB_APP_PRIVATE_KEY": testPEM,
		"BOT_GITHUB_API_URL": "https://ghes.example.com/api/v3", "BOT_MAX_COMMENT_AGE": "5m", "BOT_ALLOWED_USERS": "@octocat, hubot",
		"BOT_PERMISSION_DESTROY": "maintain", "BOT_PERMISSION_SWITCH": "maintain",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ListenAddr: ":8080", WebhookSecret: []byte("s3cret"), AppID: 123, AppPrivateKey: []byte(testPEM),
		APIURL: "https://ghes.example.com/api/v3", Workflow: "deploy.yml", MaxCommentAge: 5 * time.Minute,
		Permissions:  map[chatops.Kind]string{chatops.Deploy: "write", chatops.Status: "write", chatops.Destroy: "maintain", chatops.Switch: "maintain"},
		AllowedUsers: []string{"octocat", "hubot"}, Workers: 8, QueueSize: 1000,
		ShutdownAfter: 30 * time.Second, RedeliverEvery: 2 * time.Minute,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigHandleEventUsesActionsVariables(t *testing.T) {
	t.Parallel()
	got, err := LoadConfig(context.Background(), ModeHandleEvent, lookup(map[string]string{
		"GITHUB_TOKEN": "ghs_x", "GITHUB_API_URL": "https://api.github.com", "GITHUB_REPOSITORY": "octo-org/infra",
		"GITHUB_EVENT_PATH": "/github/workflow/event.json", "GITHUB_EVENT_NAME": "issue_comment",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != "ghs_x" || !got.ActionsToken || got.APIURL != "https://api.github.com" || got.EventName != "issue_comment" || got.Repository != "octo-org/infra" {
		t.Errorf("LoadConfig() = %+v", got)
	}
}

func TestLoadConfigReport(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GITHUB_TOKEN": "ghs_x", "GITHUB_REPOSITORY": "octo-org/infra", "GITHUB_RUN_ID": "42",
		"BOT_DEPLOY_RESULT": "success", "BOT_SSH_HOST_KEY": "h ssh-ed25519 AAAA", "BOT_FQDN": "h.example"}
	got, err := LoadConfig(context.Background(), ModeReport, lookup(base))
	if err != nil {
		t.Fatal(err)
	}
	if got.RunID != 42 || got.Result != "success" || got.HostKey != "h ssh-ed25519 AAAA" || got.FQDN != "h.example" || !got.ActionsToken {
		t.Errorf("LoadConfig() = %+v", got)
	}
	bad := map[string]string{"GITHUB_TOKEN": "ghs_x", "GITHUB_RUN_ID": "latest", "BOT_DEPLOY_RESULT": "ok"}
	_, err = LoadConfig(context.Background(), ModeReport, lookup(bad))
	for _, want := range []string{`GITHUB_RUN_ID "latest"`, `BOT_DEPLOY_RESULT "ok": required for report`, "GITHUB_REPOSITORY"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestLoadConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode Mode
		env  map[string]string
		want []string
	}{
		{"serve without secret", ModeServe, map[string]string{"BOT_GITHUB_TOKEN": "t"},
			[]string{"BOT_WEBHOOK_SECRET (secret, value not shown): required for serve"}},
		{"no credentials", ModeServe, map[string]string{"BOT_WEBHOOK_SECRET": "s"},
			[]string{"BOT_GITHUB_TOKEN: no GitHub credentials"}},
		{"handle-event without anything", ModeHandleEvent, map[string]string{},
			[]string{"GITHUB_EVENT_PATH: required", "GITHUB_EVENT_NAME: required", "GITHUB_TOKEN (pass"}},
		{"bad values", ModeServe, map[string]string{
			"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_TOKEN": "t", "BOT_MAX_COMMENT_AGE": "10 minutes", "BOT_WORKFLOW": "deploy",
			"BOT_PERMISSION_DEPLOY": "push", "BOT_WORKERS": "0", "BOT_GITHUB_API_URL": "ghes.example.com", "BOT_LISTEN_ADDR": "8080",
			"BOT_ALLOWED_USERS": "ok,not a login!",
		}, []string{
			`BOT_MAX_COMMENT_AGE "10 minutes": must be a Go duration`, `BOT_WORKFLOW "deploy": must be the file name`,
			`BOT_PERMISSION_DEPLOY "push": must be a repository role: read, triage, write, maintain or admin`, `BOT_WORKERS "0"`,
			`BOT_GITHUB_API_URL "ghes.example.com"`, `BOT_LISTEN_ADDR "8080"`, `BOT_ALLOWED_USERS "login!"`,
		}},
		{"app id not a number", ModeServe, map[string]string{"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_APP_ID": "my-app", "BOT_GITHUB_APP_PRIVATE_KEY": testPEM},
			[]string{`BOT_GITHUB_APP_ID "my-app": must be the GitHub App's numeric id`}},
		{"app key is a path", ModeServe, map[string]string{"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_APP_ID": "1", "BOT_GITHUB_APP_PRIVATE_KEY": "/secret/key.pem"},
			[]string{"BOT_GITHUB_APP_PRIVATE_KEY (secret, value not shown): must be the PEM contents"}},
		{"token and app", ModeServe, map[string]string{"BOT_WEBHOOK_SECRET": "s", "BOT_GITHUB_TOKEN": "t", "BOT_GITHUB_APP_ID": "1"},
			[]string{"BOT_GITHUB_APP_ID \"1\": give either BOT_GITHUB_TOKEN or"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfig(context.Background(), tc.mode, lookup(tc.env))
			if err == nil {
				t.Fatal("LoadConfig() succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{"/secret/key.pem", "MIIB"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret value %q:\n%v", secret, err)
				}
			}
		})
	}
}
