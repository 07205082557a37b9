package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/config"
	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/deploy"
)

// execute runs deploy, install, switch and destroy.
func (r *runner) execute(ctx context.Context) int {
	// The action never installs inputs it did not lock; a laptop without
	// nix may (the lock stage says so).
	opts := deploy.Options{Config: r.cfg, Env: r.planEnv(), Sink: r.sink, RequireLock: r.actionMode}
	// install and switch onto target-host need no Azure at all.
	if r.cfg.Target == nil {
		cloud, err := r.connectAzure(ctx)
		if err != nil {
			r.sink.Errorf("azure", "%v", err)
			r.sink.Summary(fmt.Sprintf("## nixos-cloud-deploy: %s `%s` failed\n\nCould not connect to Azure: %s\n", r.cfg.Command, r.cfg.VMName, err))
			return ExitDeployFailed
		}
		opts.Cloud = cloud
	}
	var res *deploy.Result
	if r.cfg.Command == config.Destroy {
		res = deploy.Destroy(ctx, opts)
	} else {
		res = deploy.Deploy(ctx, opts)
	}
	return r.finish(res)
}

// finish reports a result through every sink: outputs, the summary, an
// error annotation, and the exit code.
func (r *runner) finish(res *deploy.Result) int {
	for _, kv := range res.Outputs.Map() {
		if kv[1] != "" {
			r.sink.Output(kv[0], kv[1])
		}
	}
	r.sink.Summary(res.Markdown())
	if res.Switch != nil {
		// The bot's status comment shows it (the API exposes annotations).
		r.sink.Notice("switch", res.Switch.Notice())
	}
	if res.Err != nil {
		msg := res.Err.Error()
		if res.Hint != "" {
			msg += "\nHint: " + res.Hint
		}
		if res.SerialLog != "" {
			msg += "\nSerial console (last lines):\n" + res.SerialLog
		}
		r.sink.Errorf("deployment failed in stage "+res.FailedStage, "%s", msg)
		if res.Cleanup != "" {
			r.sink.Infof("%s", res.Cleanup)
		}
		return ExitDeployFailed
	}
	// The public outputs, also as notices: the REST API exposes
	// annotations, not outputs, and the ChatOps bot shows them.
	for _, n := range [][2]string{{"ssh-host-key", res.Outputs.SSHHostKey}, {"fqdn", res.Outputs.FQDN}} {
		if n[1] != "" {
			r.sink.Notice(n[0], n[1])
		}
	}
	if t, ok := r.sink.(interface{ Outputs() [][2]string }); ok {
		for _, kv := range t.Outputs() {
			fmt.Fprintf(r.env.Stdout, "%s=%s\n", kv[0], kv[1])
		}
	}
	return ExitOK
}

func (r *runner) connectAzure(ctx context.Context) (*azure.Provisioner, error) {
	g := r.env.Getenv
	a := r.cfg.Azure
	rc, err := azure.ResolveCloud(ctx, azure.Cloud{Name: a.Environment, ARMEndpoint: a.ARMEndpoint}, nil)
	if err != nil {
		return nil, err
	}
	creds := azure.Credentials{
		ClientID: a.ClientID, TenantID: a.TenantID, SubscriptionID: a.SubscriptionID, ClientSecret: a.ClientSecret,
		OIDCAudience: a.OIDCAudience, Subject: oidcSubject(g),
	}
	if u, t := g("ACTIONS_ID_TOKEN_REQUEST_URL"), g("ACTIONS_ID_TOKEN_REQUEST_TOKEN"); u != "" && t != "" {
		creds.OIDC = &azure.OIDCSource{RequestURL: u, RequestToken: t}
	}
	cred, method, err := azure.NewCredential(ctx, rc, creds, nil)
	if err != nil {
		return nil, err
	}
	r.sink.Infof("azure: %s, credential %s, subscription %s", rc.Name, method, a.SubscriptionID)
	opts := []azure.Option{azure.WithClientID(a.ClientID)}
	if rc.Name == azure.CloudStack {
		// An Azure Stack Hub lacks the API versions the SDK sends:
		// refuse before anything is created, saying which.
		opts = append(opts, azure.WithAPIVersionCheck())
	}
	return azure.NewProvisioner(a.SubscriptionID, cred, rc.ClientOptions(), opts...)
}

// oidcSubject is the federated-credential subject GitHub puts in this run's
// ID token, for the hint when Azure refuses it.
func oidcSubject(g func(string) string) string {
	repo := g("GITHUB_REPOSITORY")
	if repo == "" {
		return ""
	}
	if ref := g("GITHUB_REF"); strings.HasPrefix(ref, "refs/pull/") {
		return "repo:" + repo + ":pull_request"
	} else if ref != "" {
		return "repo:" + repo + ":ref:" + ref
	}
	return "repo:" + repo
}
