package bot

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/chatops"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/sethvargo/go-envconfig"
)

// Mode is how the bot runs.
type Mode int

const (
	ModeServe       Mode = iota + 1 // webhook server
	ModeHandleEvent                 // one Actions event
	ModeReport                      // the end of a run, reported by the run
)

// Config is the bot's validated configuration.
type Config struct {
	ListenAddr    string
	WebhookSecret []byte // secret
	Token         string // secret
	AppID         int64
	AppPrivateKey []byte // secret
	APIURL        string
	Workflow      string
	Ref           string
	MaxCommentAge time.Duration
	Permissions   map[chatops.Kind]string
	AllowedUsers  []string
	Workers       int
	QueueSize     int
	ShutdownAfter time.Duration
	// RedeliverEvery is how often serve looks for failed deliveries (App
	// only).
	RedeliverEvery time.Duration
	// ActionsToken is true when the token is the workflow's GITHUB_TOKEN:
	// the bot then comments as github-actions[bot].
	ActionsToken bool

	// handle-event and report, as GitHub Actions provides them.
	EventPath  string
	EventName  string
	Repository string
	RunID      int64
	// report: the deploy job's result and outputs.
	Result  string
	HostKey string
	FQDN    string
}

// env holds the raw variables; every value is parsed by LoadConfig so that
// an error names the variable, not a Go field.
type env struct {
	ListenAddr    string `env:"BOT_LISTEN_ADDR, default=:8080"`
	WebhookSecret string `env:"BOT_WEBHOOK_SECRET"`
	Token         string `env:"BOT_GITHUB_TOKEN"`
	AppID         string `env:"BOT_GITHUB_APP_ID"`
	AppKey        string `env:"BOT_GITHUB_APP_PRIVATE_KEY"`
	APIURL        string `env:"BOT_GITHUB_API_URL"`
	Workflow      string `env:"BOT_WORKFLOW, default=deploy.yml"`
	Ref           string `env:"BOT_REF"`
	MaxCommentAge string `env:"BOT_MAX_COMMENT_AGE, default=10m"`
	PermDeploy    string `env:"BOT_PERMISSION_DEPLOY, default=write"`
	PermStatus    string `env:"BOT_PERMISSION_STATUS, default=write"`
	PermDestroy   string `env:"BOT_PERMISSION_DESTROY, default=admin"`
	PermSwitch    string `env:"BOT_PERMISSION_SWITCH, default=write"`
	AllowedUsers  string `env:"BOT_ALLOWED_USERS"`
	Workers       string `env:"BOT_WORKERS, default=8"`
	QueueSize     string `env:"BOT_QUEUE_SIZE, default=1000"`
	ShutdownAfter string `env:"BOT_SHUTDOWN_TIMEOUT, default=30s"`
	Redeliver     string `env:"BOT_REDELIVER_INTERVAL, default=2m"`
	Result        string `env:"BOT_DEPLOY_RESULT"`
	HostKey       string `env:"BOT_SSH_HOST_KEY"`
	FQDN          string `env:"BOT_FQDN"`

	ActionsToken  string `env:"GITHUB_TOKEN"`
	ActionsAPIURL string `env:"GITHUB_API_URL"`
	Repository    string `env:"GITHUB_REPOSITORY"`
	EventPath     string `env:"GITHUB_EVENT_PATH"`
	EventName     string `env:"GITHUB_EVENT_NAME"`
	RunID         string `env:"GITHUB_RUN_ID"`
}

var (
	workflowRE = regexp.MustCompile(`^[A-Za-z0-9._-]+\.ya?ml$`)
	loginRE    = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$`)
)

// LoadConfig reads the configuration for a mode. Every invalid variable is
// reported (errors.Join of *config.FieldError named by the variable); secret
// values never appear.
func LoadConfig(ctx context.Context, mode Mode, lookup func(string) (string, bool)) (Config, error) {
	var e env
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &e, Lookuper: envconfig.LookuperFunc(lookup)}); err != nil {
		return Config{}, fmt.Errorf("failed to read the environment: %w", err)
	}
	var errs []error
	bad := func(name, value, rule string) {
		errs = append(errs, &config.FieldError{Input: name, Value: value, Rule: rule})
	}
	secret := func(name, rule string) {
		errs = append(errs, &config.FieldError{Input: name, Secret: true, Rule: rule})
	}
	c := Config{ListenAddr: e.ListenAddr, Workflow: e.Workflow, Ref: e.Ref, Token: e.Token,
		EventPath: e.EventPath, EventName: e.EventName, Repository: e.Repository,
		Result: e.Result, HostKey: e.HostKey, FQDN: e.FQDN}

	if mode == ModeHandleEvent || mode == ModeReport {
		// Inside GitHub Actions the job's own token and API URL are the
		// natural defaults.
		if c.Token == "" && e.AppID == "" && e.ActionsToken != "" {
			c.Token, c.ActionsToken = e.ActionsToken, true
		}
		if e.APIURL == "" {
			e.APIURL = e.ActionsAPIURL
		}
	}
	if mode == ModeReport {
		if _, err := parseRepoVar(c.Repository); err != nil {
			bad("GITHUB_REPOSITORY", c.Repository, "required for report: OWNER/NAME (GitHub Actions sets it)")
		}
		id, err := strconv.ParseInt(e.RunID, 10, 64)
		if err != nil || id <= 0 {
			bad("GITHUB_RUN_ID", e.RunID, "required for report: the run's numeric id (GitHub Actions sets it)")
		}
		c.RunID = id
		if !slices.Contains(jobResults, c.Result) {
			bad("BOT_DEPLOY_RESULT", c.Result, "required for report: the deploy job's result, ${{ needs.deploy.result }}: "+strings.Join(jobResults, ", "))
		}
	}
	if mode == ModeHandleEvent {
		if c.EventPath == "" {
			bad("GITHUB_EVENT_PATH", "", "required for handle-event: the path of the event payload (GitHub Actions sets it)")
		}
		if c.EventName == "" {
			bad("GITHUB_EVENT_NAME", "", "required for handle-event: the event's name, such as issue_comment (GitHub Actions sets it)")
		}
		if c.Repository != "" {
			if _, err := parseRepoVar(c.Repository); err != nil {
				bad("GITHUB_REPOSITORY", c.Repository, "must be OWNER/NAME")
			}
		}
	}
	if mode == ModeServe {
		if e.WebhookSecret == "" {
			secret("BOT_WEBHOOK_SECRET", "required for serve: the webhook secret of the GitHub App; the bot refuses to run without verifying deliveries")
		}
		c.WebhookSecret = []byte(e.WebhookSecret)
		if _, _, err := splitHostPort(c.ListenAddr); err != nil {
			bad("BOT_LISTEN_ADDR", c.ListenAddr, "must be HOST:PORT or :PORT, for example :8080")
		}
	}
	switch {
	case c.Token != "" && e.AppID != "":
		bad("BOT_GITHUB_APP_ID", e.AppID, "give either BOT_GITHUB_TOKEN or BOT_GITHUB_APP_ID with BOT_GITHUB_APP_PRIVATE_KEY, not both")
	case e.AppID != "":
		id, err := strconv.ParseInt(e.AppID, 10, 64)
		if err != nil || id <= 0 {
			bad("BOT_GITHUB_APP_ID", e.AppID, "must be the GitHub App's numeric id (App settings, \"App ID\")")
		}
		c.AppID = id
		switch {
		case e.AppKey == "":
			secret("BOT_GITHUB_APP_PRIVATE_KEY", "required with BOT_GITHUB_APP_ID: the contents of the App's .pem private key")
		case !strings.Contains(e.AppKey, "-----BEGIN") || !strings.Contains(e.AppKey, "PRIVATE KEY-----"):
			secret("BOT_GITHUB_APP_PRIVATE_KEY", "must be the PEM contents of the App's private key (-----BEGIN RSA PRIVATE KEY----- ...), not a path or an id")
		}
		c.AppPrivateKey = []byte(strings.ReplaceAll(e.AppKey, `\n`, "\n"))
	case c.Token == "":
		want := "BOT_GITHUB_TOKEN (or BOT_GITHUB_APP_ID and BOT_GITHUB_APP_PRIVATE_KEY)"
		if mode != ModeServe {
			want = "GITHUB_TOKEN (pass `env: GITHUB_TOKEN: ${{ github.token }}`), BOT_GITHUB_TOKEN, or BOT_GITHUB_APP_ID and BOT_GITHUB_APP_PRIVATE_KEY"
		}
		bad("BOT_GITHUB_TOKEN", "", "no GitHub credentials: set "+want)
	}
	if e.APIURL != "" {
		u, err := url.Parse(e.APIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			bad("BOT_GITHUB_API_URL", e.APIURL, "must be the REST API URL: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server")
		}
		c.APIURL = e.APIURL
	}
	if !workflowRE.MatchString(c.Workflow) {
		bad("BOT_WORKFLOW", c.Workflow, "must be the file name of the deploy workflow in .github/workflows, for example deploy.yml")
	}
	if strings.ContainsAny(c.Ref, " ~^:?*[\\") {
		bad("BOT_REF", c.Ref, "must be a branch or tag name")
	}
	dur := func(name, v string, min time.Duration) time.Duration {
		d, err := time.ParseDuration(v)
		if err != nil || d < min {
			bad(name, v, fmt.Sprintf("must be a Go duration of at least %v, such as 10m or 1h30m", min))
		}
		return d
	}
	c.MaxCommentAge = dur("BOT_MAX_COMMENT_AGE", e.MaxCommentAge, time.Second)
	c.ShutdownAfter = dur("BOT_SHUTDOWN_TIMEOUT", e.ShutdownAfter, time.Second)
	c.RedeliverEvery = dur("BOT_REDELIVER_INTERVAL", e.Redeliver, 10*time.Second)
	num := func(name, v string, lo, hi int) int {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad(name, v, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
		}
		return n
	}
	c.Workers = num("BOT_WORKERS", e.Workers, 1, 256)
	c.QueueSize = num("BOT_QUEUE_SIZE", e.QueueSize, 1, 1_000_000)
	c.Permissions = map[chatops.Kind]string{}
	for _, p := range []struct {
		name, v string
		k       chatops.Kind
	}{{"BOT_PERMISSION_DEPLOY", e.PermDeploy, chatops.Deploy}, {"BOT_PERMISSION_STATUS", e.PermStatus, chatops.Status}, {"BOT_PERMISSION_DESTROY", e.PermDestroy, chatops.Destroy}, {"BOT_PERMISSION_SWITCH", e.PermSwitch, chatops.Switch}} {
		if _, ok := permissionRank[p.v]; !ok || p.v == "none" {
			bad(p.name, p.v, "must be a repository role: read, triage, write, maintain or admin")
		}
		c.Permissions[p.k] = p.v
	}
	for _, u := range strings.FieldsFunc(e.AllowedUsers, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		u = strings.TrimPrefix(u, "@")
		if !loginRE.MatchString(u) {
			bad("BOT_ALLOWED_USERS", u, "must be a comma-separated list of GitHub logins")
			continue
		}
		c.AllowedUsers = append(c.AllowedUsers, u)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

func parseRepoVar(s string) (string, error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", errors.New("not OWNER/NAME")
	}
	return s, nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	return addr[:i], port, nil
}
