package sshx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Environment variables RunProxy reads when the matching flag is not given.
const (
	EnvProxyAddr        = "NCD_SSH_ADDR"
	EnvProxyUser        = "NCD_SSH_USER"
	EnvProxyHostKey     = "NCD_SSH_HOST_KEY"
	EnvProxyHostKeyFile = "NCD_SSH_HOST_KEY_FILE"
	EnvProxyIdentity    = "NCD_SSH_IDENTITY"
	EnvProxyTarget      = "NCD_SSH_TARGET"
)

// Exit codes of RunProxy. 255 is what ssh itself exits with when it cannot connect.
const (
	ProxyExitOK        = 0
	ProxyExitUsage     = 2
	ProxyExitConnect   = 255
	proxyName          = "nixos-cloud-deploy proxy"
	defaultProxyDialTO = 30 * time.Second
)

// ProxyConfig is what the proxy needs; nothing in it is secret (the private key stays in its file).
type ProxyConfig struct {
	// Addr is the VM's "host:port".
	Addr string
	// User logs in on the VM; "" means root.
	User string
	// HostKey is the VM's pinned host key.
	HostKey ssh.PublicKey
	// IdentityFile is the path of the deploy key (OpenSSH private key, unencrypted).
	IdentityFile string
	// Target is where the tunnel goes, as seen from the VM; "" means 127.0.0.1 and Addr's port.
	Target string
	// Wait, if positive, makes the proxy wait up to that long for the VM (WaitReady) instead of
	// trying once.
	Wait time.Duration
}

// ProxyCommand returns the value of ssh's ProxyCommand option that runs exe's proxy subcommand for
// cfg, quoted for the shell ssh runs it with ("$SHELL -c 'exec ...'") and with '%' doubled because
// ssh expands %h, %p... in it, for `ssh -o ProxyCommand=VALUE`. nixos-anywhere needs
// WriteProxyScript instead: it passes its ssh options on through NIX_SSHOPTS, which splits this value.
func ProxyCommand(exe string, cfg ProxyConfig) (string, error) {
	args, err := proxyArgv(exe, cfg)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(Quote(args...), "%", "%%"), nil
}

// proxyArgv is the argument vector of the proxy subcommand for cfg, for a
// caller that runs it without a shell (or writes it into a script).
func proxyArgv(exe string, cfg ProxyConfig) ([]string, error) {
	if exe == "" || cfg.Addr == "" || cfg.HostKey == nil || cfg.IdentityFile == "" {
		return nil, errors.New("failed to build ProxyCommand: executable, address, host key and identity file are all required")
	}
	args := []string{exe, "proxy", "--addr", cfg.Addr, "--host-key", AuthorizedKey(cfg.HostKey), "--identity", cfg.IdentityFile}
	if cfg.User != "" {
		args = append(args, "--user", cfg.User)
	}
	if cfg.Target != "" {
		args = append(args, "--target", cfg.Target)
	}
	if cfg.Wait > 0 {
		args = append(args, "--wait", cfg.Wait.String())
	}
	for _, a := range args {
		// ssh reads the option as one config line: a line break would end it.
		if strings.ContainsAny(a, "\x00\r\n") {
			return nil, fmt.Errorf("failed to build ProxyCommand: argument %q contains a line break or NUL byte", a)
		}
	}
	return args, nil
}

// ProxyOption is "ProxyCommand=" + ProxyCommand(exe, cfg), one argument for ssh -o. Not for
// nixos-anywhere: it contains spaces, see WriteProxyScript.
func ProxyOption(exe string, cfg ProxyConfig) (string, error) {
	v, err := ProxyCommand(exe, cfg)
	if err != nil {
		return "", err
	}
	return "ProxyCommand=" + v, nil
}

// WriteProxyScript writes an executable shell script to path that runs exe's proxy subcommand for
// cfg, and returns the ssh option that uses it: "ProxyCommand=" + path.
//
// This is the form to give nixos-anywhere (--ssh-option). It runs ssh directly, but also hands its
// ssh options to nix copy as NIX_SSHOPTS="${sshArgs[*]}", which Nix splits at whitespace (older
// releases) or with shell quoting rules (newer ones): a ProxyCommand with arguments breaks apart
// there. The returned option is one token with no whitespace, quotes or backslashes, which both
// splits keep whole; path must be made of letters, digits and _-./,:@%+ (a path under os.MkdirTemp
// is, unless TMPDIR is unusual).
func WriteProxyScript(path, exe string, cfg ProxyConfig) (string, error) {
	if path == "" || strings.IndexFunc(path, unsafeRune) >= 0 {
		return "", fmt.Errorf("failed to write proxy script: path %q must consist of letters, digits and _-./,:@%%+ "+
			"so that NIX_SSHOPTS carries it whole; set TMPDIR to a plain directory", path)
	}
	cmd, err := ProxyCommand(exe, cfg)
	if err != nil {
		return "", err
	}
	// ProxyCommand doubled every % for ssh; the script is read by sh only.
	script := "#!/bin/sh\n# Written by nixos-cloud-deploy: ssh ProxyCommand that only reaches the host with the pinned key.\n" +
		"exec " + strings.ReplaceAll(cmd, "%%", "%") + "\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("failed to write proxy script: %w", err)
	}
	// WriteFile keeps the mode of an existing file; make sure it is executable.
	if err := os.Chmod(path, 0o700); err != nil {
		return "", fmt.Errorf("failed to write proxy script: %w", err)
	}
	return "ProxyCommand=" + strings.ReplaceAll(path, "%", "%%"), nil
}

// RunProxy is the proxy subcommand (args exclude the word "proxy"), for ssh's ProxyCommand: it
// connects to the VM with the pinned host key and the deploy key, opens a direct-tcpip channel to
// the VM's own sshd (127.0.0.1 and the same port unless --target says otherwise) and pipes stdin and
// stdout through it. The ssh that runs it may skip host key checks (nixos-anywhere does): it can
// only reach the verified host. It returns an exit code: 0, 2 for bad usage, 255 when it cannot
// connect, as ssh does.
func RunProxy(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	t, target, wait, connectTimeout, err := parseProxyArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ProxyExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", proxyName, err)
		return ProxyExitUsage
	}

	var client *Client
	if wait > 0 {
		client, err = WaitReady(ctx, t, WaitOptions{Timeout: wait})
	} else {
		dctx, cancel := context.WithTimeout(ctx, connectTimeout)
		client, err = Dial(dctx, t)
		cancel()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", proxyName, err)
		return ProxyExitConnect
	}
	defer client.Close()

	conn, err := client.ssh.DialContext(ctx, "tcp", target)
	if err != nil {
		fmt.Fprintf(stderr, "%s: failed to open a tunnel to %q on %q (the VM's sshd must allow TCP forwarding): %v\n",
			proxyName, target, t.Addr, err)
		return ProxyExitConnect
	}
	defer conn.Close()

	go func() {
		_, _ = io.Copy(conn, stdin)
		// Our stdin ended: tell the far side, and keep reading its answer until it closes.
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	down := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, conn)
		down <- err
	}()
	select {
	case err := <-down:
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "%s: %v\n", proxyName, err)
			return ProxyExitConnect
		}
		return ProxyExitOK
	case <-client.Done():
		fmt.Fprintf(stderr, "%s: %v\n", proxyName, client.Err())
		return ProxyExitConnect
	case <-ctx.Done():
		// Our ssh is done with us or the run was canceled; either way it reports on its own.
		return ProxyExitConnect
	}
}

func parseProxyArgs(args []string, getenv func(string) string, stderr io.Writer) (t Target, target string, wait, connectTimeout time.Duration, err error) {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s --addr HOST:PORT --host-key 'ssh-ed25519 AAAA...' --identity FILE [flags]\n\n"+
			"Used as ssh's ProxyCommand: connects to HOST:PORT with the pinned host key and the key in FILE, then\n"+
			"tunnels stdin/stdout to the host's own sshd. Each flag falls back to the environment variable named.\n\n", proxyName)
		fs.PrintDefaults()
	}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	addr := fs.String("addr", env(EnvProxyAddr, ""), "VM address host:port ($"+EnvProxyAddr+")")
	user := fs.String("user", env(EnvProxyUser, "root"), "user to log in as ($"+EnvProxyUser+")")
	hostKey := fs.String("host-key", env(EnvProxyHostKey, ""), "pinned public host key, authorized_keys or known_hosts line ($"+EnvProxyHostKey+")")
	hostKeyFile := fs.String("host-key-file", env(EnvProxyHostKeyFile, ""), "file holding the pinned public host key ($"+EnvProxyHostKeyFile+")")
	identity := fs.String("identity", env(EnvProxyIdentity, ""), "private key FILE to log in with; never the key itself ($"+EnvProxyIdentity+")")
	fs.StringVar(&target, "target", env(EnvProxyTarget, ""), "tunnel destination as seen from the VM (default 127.0.0.1 and the port of --addr) ($"+EnvProxyTarget+")")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long for the VM to accept SSH (default: one attempt)")
	fs.DurationVar(&connectTimeout, "connect-timeout", defaultProxyDialTO, "time limit for one attempt")
	if err = fs.Parse(args); err != nil {
		return
	}
	if fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
		return
	}
	if *addr == "" || *identity == "" || (*hostKey == "") == (*hostKeyFile == "") {
		err = errors.New("--addr, --identity and exactly one of --host-key and --host-key-file are required")
		return
	}
	_, port, err := net.SplitHostPort(*addr)
	if err != nil {
		err = fmt.Errorf("--addr %q: want host:port: %w", *addr, err)
		return
	}
	if target == "" {
		target = net.JoinHostPort("127.0.0.1", port)
	}
	keyText := *hostKey
	if *hostKeyFile != "" {
		b, rerr := os.ReadFile(*hostKeyFile)
		if rerr != nil {
			err = fmt.Errorf("failed to read host key file: %w", rerr)
			return
		}
		keyText = string(b)
	}
	hk, err := ParseHostKey(keyText)
	if err != nil {
		return
	}
	signer, err := LoadSigner(*identity)
	if err != nil {
		return
	}
	t = Target{Addr: *addr, User: *user, HostKey: hk, Signer: signer}
	return
}

// LoadSigner reads an unencrypted private key file (OpenSSH, PKCS#8, PKCS#1 or SEC 1 PEM). Errors name
// the file, never its content.
func LoadSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("identity file %q is passphrase-protected; the deploy key must be unencrypted", path)
	}
	if err != nil {
		// The parser's message does not echo key material.
		return nil, fmt.Errorf("failed to parse identity file %q: %w", path, err)
	}
	return signer, nil
}
