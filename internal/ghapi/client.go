// Package ghapi is the bot's adapter over go-github: the few REST calls it
// makes, with small types of its own, and client construction for a token or
// a GitHub App (installation tokens through ghinstallation), on github.com or
// GitHub Enterprise Server.
package ghapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v62/github"
)

// Repo names a repository.
type Repo struct{ Owner, Name string }

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// ParseRepo parses "owner/name".
func ParseRepo(s string) (Repo, error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return Repo{}, fmt.Errorf("repository %q: must be OWNER/NAME", s)
	}
	return Repo{Owner: owner, Name: name}, nil
}

// Options configure a Provider. Exactly one of Token or AppID+PrivateKey is used.
type Options struct {
	// APIURL is the REST API root: "" or https://api.github.com for
	// github.com, https://HOST/api/v3 (or just https://HOST) for GitHub
	// Enterprise Server.
	APIURL     string
	Token      string // secret
	AppID      int64
	PrivateKey []byte // PEM; secret
	// HTTPClient carries the transport (proxies) and the timeout of one
	// attempt; nil means the default transport and 30 s.
	HTTPClient *http.Client
	UserAgent  string
	// RunLookup bounds the fallback search for a dispatched run when the
	// server does not return run details (see Dispatch).
	RunLookupInterval time.Duration // default 2 s
	RunLookupTimeout  time.Duration // default 60 s
	// MaxRateLimitWait is the longest a request waits out a rate limit
	// before it fails (default 5 minutes).
	MaxRateLimitWait time.Duration
	// Wait pauses between attempts; nil means a timer (tests record the
	// pauses instead of sleeping).
	Wait func(ctx context.Context, d time.Duration) error
}

// Provider hands out Clients: one shared client for a token, one per
// installation for a GitHub App.
type Provider struct {
	opts    Options
	base    *github.Client // token client, or the App (JWT) client
	apps    *ghinstallation.AppsTransport
	mu      sync.Mutex
	byInst  map[int64]*Client
	byRepo  map[Repo]int64
	tokenCl *Client
}

// NewProvider checks the options and builds the underlying clients. It makes
// no request.
func NewProvider(o Options) (*Provider, error) {
	if o.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Workers talk to one host: keep their connections.
		t.MaxIdleConnsPerHost = 64
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: t}
	}
	if o.RunLookupInterval <= 0 {
		o.RunLookupInterval = 2 * time.Second
	}
	if o.RunLookupTimeout <= 0 {
		o.RunLookupTimeout = 60 * time.Second
	}
	if o.MaxRateLimitWait <= 0 {
		o.MaxRateLimitWait = 5 * time.Minute
	}
	if o.Wait == nil {
		o.Wait = sleep
	}
	p := &Provider{opts: o, byInst: map[int64]*Client{}, byRepo: map[Repo]int64{}}
	switch {
	case o.Token != "":
		gh, err := p.newGitHub(o.HTTPClient.Transport, func(t http.RoundTripper) http.RoundTripper {
			return &bearer{token: o.Token, next: t}
		})
		if err != nil {
			return nil, err
		}
		p.base = gh
		p.tokenCl = p.wrap(gh)
	case o.AppID != 0:
		gh, err := p.newGitHub(o.HTTPClient.Transport, nil)
		if err != nil {
			return nil, err
		}
		atr, err := ghinstallation.NewAppsTransport(p.transport(o.HTTPClient.Transport), o.AppID, o.PrivateKey)
		if err != nil {
			// The ghinstallation error may quote PEM parsing detail, never the key.
			return nil, errors.New("failed to read the GitHub App private key: it must be the PEM file GitHub generated for the App (-----BEGIN RSA PRIVATE KEY-----)")
		}
		atr.BaseURL = strings.TrimSuffix(gh.BaseURL.String(), "/")
		p.apps = atr
		p.base = github.NewClient(&http.Client{Transport: atr})
		p.base.BaseURL, p.base.UploadURL = gh.BaseURL, gh.UploadURL
		p.setUA(p.base)
	default:
		return nil, errors.New("no GitHub credentials: give a token or a GitHub App id and private key")
	}
	return p, nil
}

func (p *Provider) transport(t http.RoundTripper) http.RoundTripper {
	if t == nil {
		t = http.DefaultTransport
	}
	// The client has no overall timeout (a rate limit may be waited out
	// for minutes); each attempt has one instead.
	t = attemptTimeout{next: t, d: p.opts.HTTPClient.Timeout}
	return drain{&retry{next: t, pause: time.Second, maxWait: p.opts.MaxRateLimitWait, wait: p.opts.Wait}}
}

// attemptTimeout bounds one request, until its body is closed.
type attemptTimeout struct {
	next http.RoundTripper
	d    time.Duration
}

func (a attemptTimeout) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.d <= 0 {
		return a.next.RoundTrip(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.d)
	resp, err := a.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// retry repeats a request that GitHub refused for a rate limit, and an
// idempotent one (GET, HEAD, PATCH of a comment body, DELETE) that met a
// 5xx. A POST that failed with a 5xx is never repeated: it may have taken
// effect, and a second dispatch would run the deploy twice.
//
// Rate limits, as "Rate limits for the REST API" ("Exceeding the rate
// limit") tells clients to handle them: a 403 or 429 that is a primary
// limit (x-ratelimit-remaining: 0) waits until x-ratelimit-reset; a
// secondary limit waits retry-after seconds when given, else at least a
// minute, growing exponentially. A rate-limited request was refused before
// it did anything, so any method is repeated, as octokit's
// plugin-throttling does. A wait longer than maxWait is not made: the
// error goes to the caller.
type retry struct {
	next    http.RoundTripper
	pause   time.Duration // first pause after a 5xx
	maxWait time.Duration
	wait    func(context.Context, time.Duration) error
}

// rateLimitRetries is how often a rate-limited request is repeated.
const rateLimitRetries = 3

func (rt *retry) RoundTrip(r *http.Request) (*http.Response, error) {
	idempotent := r.Method == "GET" || r.Method == "PATCH" || r.Method == "DELETE" || r.Method == "HEAD"
	serverErrors, limited := 0, 0
	for {
		resp, err := rt.next.RoundTrip(r)
		if err != nil {
			return resp, err
		}
		var pause time.Duration
		switch d, ok := rateLimitWait(resp, limited); {
		case ok:
			if limited == rateLimitRetries || d > rt.maxWait {
				return resp, nil
			}
			limited++
			pause = d
		case resp.StatusCode >= 500 && idempotent && serverErrors < 2:
			pause = rt.pause << serverErrors
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				pause = min(time.Duration(s)*time.Second, 10*time.Second)
			}
			serverErrors++
		default:
			return resp, nil
		}
		if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
			return resp, nil // the body cannot be sent again
		}
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
		if err := rt.wait(r.Context(), pause); err != nil {
			return nil, err
		}
		if r.GetBody != nil {
			body, err := r.GetBody()
			if err != nil {
				return nil, err
			}
			r = r.Clone(r.Context())
			r.Body = body
		}
	}
}

// rateLimitWait tells whether resp is a rate limit and how long to wait
// before the next attempt (the n-th repetition, from 0).
func rateLimitWait(resp *http.Response, n int) (time.Duration, bool) {
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	h := resp.Header
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if h.Get("X-Ratelimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			// One second more: the reset time is whole seconds.
			return max(time.Until(time.Unix(reset, 0))+time.Second, 0), true
		}
		return time.Minute << n, true
	}
	if resp.StatusCode == http.StatusTooManyRequests || secondaryLimit(resp) {
		return time.Minute << n, true
	}
	return 0, false // a 403 for a missing permission
}

// secondaryLimit tells a 403 for a secondary rate limit from one for a
// missing permission: only the message does ("You have exceeded a secondary
// rate limit"). The body is read (at most 64 KiB) and put back.
func secondaryLimit(resp *http.Response) bool {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	low := bytes.ToLower(b)
	return bytes.Contains(low, []byte("secondary rate limit")) || bytes.Contains(low, []byte("abuse"))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// drain reads what go-github leaves of a response body (it decodes the JSON
// and closes) so that the connection goes back to the pool.
type drain struct{ next http.RoundTripper }

func (d drain) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if err == nil && resp.Body != nil {
		resp.Body = &drainBody{resp.Body}
	}
	return resp, err
}

type drainBody struct{ io.ReadCloser }

func (b *drainBody) Close() error {
	_, _ = io.CopyN(io.Discard, b.ReadCloser, 64<<10)
	return b.ReadCloser.Close()
}

func (p *Provider) setUA(gh *github.Client) {
	if p.opts.UserAgent != "" {
		gh.UserAgent = p.opts.UserAgent
	}
}

func (p *Provider) newGitHub(t http.RoundTripper, wrap func(http.RoundTripper) http.RoundTripper) (*github.Client, error) {
	t = p.transport(t)
	if wrap != nil {
		t = wrap(t)
	}
	gh := github.NewClient(&http.Client{Transport: t})
	if p.opts.APIURL != "" {
		var err error
		// WithEnterpriseURLs appends /api/v3/ unless the URL already ends
		// with it or the host is api.* (github.com, GHE.com).
		gh, err = gh.WithEnterpriseURLs(p.opts.APIURL, p.opts.APIURL)
		if err != nil {
			return nil, fmt.Errorf("GitHub API URL %q: %w", p.opts.APIURL, err)
		}
	}
	p.setUA(gh)
	return gh, nil
}

// BaseURL is the REST API root the clients use, with a trailing slash.
func (p *Provider) BaseURL() string { return p.base.BaseURL.String() }

// Client returns a client for repo. installationID comes from a webhook
// payload; 0 means "find it" (GitHub App mode outside webhooks).
func (p *Provider) Client(ctx context.Context, installationID int64, repo Repo) (*Client, error) {
	if p.tokenCl != nil {
		return p.tokenCl, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if installationID == 0 {
		installationID = p.byRepo[repo]
	}
	if installationID == 0 {
		inst, _, err := p.base.Apps.FindRepositoryInstallation(ctx, repo.Owner, repo.Name)
		if err != nil {
			return nil, fmt.Errorf("failed to find the GitHub App installation on %s: %w (is the App installed on the repository?)", repo, err)
		}
		installationID = inst.GetID()
		p.byRepo[repo] = installationID
	}
	if c, ok := p.byInst[installationID]; ok {
		return c, nil
	}
	itr := ghinstallation.NewFromAppsTransport(p.apps, installationID)
	gh := github.NewClient(&http.Client{Transport: itr})
	gh.BaseURL, gh.UploadURL = p.base.BaseURL, p.base.UploadURL
	p.setUA(gh)
	c := p.wrap(gh)
	p.byInst[installationID] = c
	return c, nil
}

// Identity is the login the bot comments as: the token's user, or the App's
// "<slug>[bot]". Comments by it are ignored.
func (p *Provider) Identity(ctx context.Context) (string, error) {
	if p.tokenCl != nil {
		u, _, err := p.base.Users.Get(ctx, "")
		if err != nil {
			return "", fmt.Errorf("failed to get the token's user: %w", err)
		}
		return u.GetLogin(), nil
	}
	app, _, err := p.base.Apps.Get(ctx, "")
	if err != nil {
		return "", fmt.Errorf("failed to get the GitHub App: %w", err)
	}
	return app.GetSlug() + "[bot]", nil
}

func (p *Provider) wrap(gh *github.Client) *Client {
	return &Client{gh: gh, lookupEvery: p.opts.RunLookupInterval, lookupFor: p.opts.RunLookupTimeout}
}

// bearer adds a token to every request; it never logs or echoes it.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r2)
}

// NewClient wraps an existing go-github client (tests, callers with their
// own auth).
func NewClient(gh *github.Client) *Client {
	return &Client{gh: gh, lookupEvery: 2 * time.Second, lookupFor: 60 * time.Second}
}

// Client makes the bot's REST calls.
type Client struct {
	gh          *github.Client
	lookupEvery time.Duration
	lookupFor   time.Duration
}

// StatusCode is the HTTP status of a GitHub API error, or 0.
func StatusCode(err error) int {
	var (
		er  *github.ErrorResponse
		rl  *github.RateLimitError
		arl *github.AbuseRateLimitError
	)
	switch {
	case errors.As(err, &er) && er.Response != nil:
		return er.Response.StatusCode
	case errors.As(err, &rl) && rl.Response != nil:
		return rl.Response.StatusCode
	case errors.As(err, &arl) && arl.Response != nil:
		return arl.Response.StatusCode
	}
	return 0
}
