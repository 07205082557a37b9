// Package sshtest starts a real OpenSSH sshd on loopback for tests.
//
// Every server lives in its own temporary directory (config, host key, authorized_keys, log) on
// 127.0.0.1 and a random port, and is killed, with every session it forked, in t.Cleanup. Remote
// commands run through a small ForceCommand wrapper that puts [Server.BinDir] first on PATH, exports
// the variables given with [WithEnv], and records every command, so tests can script remote tools
// (lsblk, findmnt, nixos-version, ...) by dropping fake executables there with [Server.AddExecutable].
package sshtest

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDPath is the sshd binary the servers run. sshd refuses to re-exec itself from a relative path.
const SSHDPath = "/usr/sbin/sshd"

// InstallHint says how to get sshd when it is missing.
const InstallHint = "install OpenSSH's server: apt-get install openssh-server (Debian/Ubuntu) or add pkgs.openssh to the dev shell"

// Server is a running (or, with [Delayed], prepared) OpenSSH sshd on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port". With Delayed it is reserved but nothing listens until Listen.
	Addr string
	// Port is Addr's port.
	Port int
	// HostKey is the public half of the primary host key (ed25519 unless WithHostKey said otherwise).
	HostKey ssh.PublicKey
	// HostSigner signs with the primary host key, so a test can reuse it for another server.
	HostSigner ssh.Signer
	// HostKeyPEM is the primary host key in OpenSSH private key format.
	HostKeyPEM []byte
	// ClientSigner is a key that the server accepts for User.
	ClientSigner ssh.Signer
	// ClientKeyPEM is ClientSigner's private key in OpenSSH format; ClientKeyFile holds it (mode 0600).
	ClientKeyPEM  []byte
	ClientKeyFile string
	// KnownHostsFile has one line for Addr with every host key, for the real ssh client.
	KnownHostsFile string
	// User is the account sessions log in to: the user running the test.
	User string
	// Dir is the server's temporary directory; BinDir (Dir/bin) is first on the remote PATH.
	Dir    string
	BinDir string

	t          testing.TB
	configFile string
	cmdLog     string

	mu          sync.Mutex
	cmd         *exec.Cmd
	exited      chan struct{}
	log         bytes.Buffer
	listeningAt time.Time
	fixedPort   bool

	orphans []int // sessions of a stopped listener

	hostKeyLines []string
	knownKeys    []string
	extraConfig  []string
	wrapper      []string
	keysFiles    []string
}

type options struct {
	hostKeys    []crypto.PrivateKey
	clientKey   crypto.PrivateKey
	authorized  []ssh.PublicKey
	env         []string
	pathPrefix  []string
	extraConfig []string
	shell       string
	delayed     bool
	wrapper     []string
	keysFiles   []string
	hostKeyPath string
}

// Option configures Start.
type Option func(*options)

// WithAuthorizedKeysFiles makes sshd also read these authorized_keys files
// (sshd_config syntax: %h is the user's home), as a real system's
// ~/.ssh/authorized_keys.
func WithAuthorizedKeysFiles(paths ...string) Option {
	return func(o *options) { o.keysFiles = append(o.keysFiles, paths...) }
}

// WithWrapper starts sshd through argv, which must exec its arguments (for
// example "unshare --mount -- /path/setup.sh", whose last line is
// exec "$@"), so a test can give the server a private mount namespace that
// looks like another machine (its own /etc/os-release, /dev/disk/by-id).
func WithWrapper(argv ...string) Option {
	return func(o *options) { o.wrapper = append([]string(nil), argv...) }
}

// WithHostKey makes key (ed25519.PrivateKey, *ecdsa.PrivateKey or *rsa.PrivateKey) the primary host key.
func WithHostKey(key crypto.PrivateKey) Option {
	return func(o *options) { o.hostKeys = append([]crypto.PrivateKey{key}, o.hostKeys...) }
}

// WithHostKeyPEM is WithHostKey for a key in PEM (OpenSSH, PKCS#8, PKCS#1 or SEC 1) form.
// It panics on a key it cannot parse: that is a bug in the test.
func WithHostKeyPEM(pemBytes []byte) Option {
	key, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		panic(fmt.Sprintf("sshtest: failed to parse host key: %v", err))
	}
	return WithHostKey(key)
}

// WithHostKeyPath makes sshd read its primary host key from path, as a real
// machine's sshd reads /etc/ssh/ssh_host_ed25519_key, instead of from the
// server's own directory. Putting the key there (HostKeyPEM holds it) is the
// caller's job, typically the wrapper's (WithWrapper) in a private mount
// namespace; a test can then replace the file, send sshd SIGHUP, and sshd
// presents the new key, as on the real machine.
func WithHostKeyPath(path string) Option {
	return func(o *options) { o.hostKeyPath = path }
}

// WithExtraHostKey adds another host key (a real Ubuntu VM offers rsa, ecdsa and ed25519).
func WithExtraHostKey(key crypto.PrivateKey) Option {
	return func(o *options) { o.hostKeys = append(o.hostKeys, key) }
}

// WithClientKey sets the key behind ClientSigner/ClientKeyPEM instead of a fresh ed25519 key.
func WithClientKey(key crypto.PrivateKey) Option {
	return func(o *options) { o.clientKey = key }
}

// WithAuthorizedKeys authorises more public keys for User, besides ClientSigner's.
func WithAuthorizedKeys(keys ...ssh.PublicKey) Option {
	return func(o *options) { o.authorized = append(o.authorized, keys...) }
}

// WithEnv exports "NAME=value" pairs in every remote command's environment.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// WithPATHPrefix puts dirs on the remote PATH, after BinDir and before the system directories.
func WithPATHPrefix(dirs ...string) Option {
	return func(o *options) { o.pathPrefix = append(o.pathPrefix, dirs...) }
}

// WithShell runs remote commands with shell -c instead of the user's login shell,
// for example "/bin/dash" to check that a command is POSIX.
func WithShell(shell string) Option {
	return func(o *options) { o.shell = shell }
}

// WithConfig appends raw lines to sshd_config (for example "AllowTcpForwarding no").
// sshd uses the first value it reads for most keywords, and these come last: only keywords
// Start does not set take effect.
func WithConfig(lines ...string) Option {
	return func(o *options) { o.extraConfig = append(o.extraConfig, lines...) }
}

// Delayed prepares the server and reserves its port, but starts sshd only when Listen is called,
// for readiness tests. Until then connections to Addr are refused.
func Delayed() Option {
	return func(o *options) { o.delayed = true }
}

// Start prepares and starts an sshd. It fails the test, with an install hint, when sshd is missing.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Fatalf("sshtest: %s not found: %v; %s", SSHDPath, err, InstallHint)
	}
	s, err := prepare(t, &o)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	s.wrapper = o.wrapper
	t.Cleanup(s.cleanup)
	if o.delayed {
		return s
	}
	if err := s.listen(5); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return s
}

func prepare(t testing.TB, o *options) (*Server, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("failed to look up the current user: %w", err)
	}
	dir := t.TempDir()
	s := &Server{
		t:              t,
		User:           u.Username,
		Dir:            dir,
		BinDir:         filepath.Join(dir, "bin"),
		ClientKeyFile:  filepath.Join(dir, "client_key"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		configFile:     filepath.Join(dir, "sshd_config"),
		cmdLog:         filepath.Join(dir, "commands.log"),
		fixedPort:      o.delayed,
	}
	if err := os.Mkdir(s.BinDir, 0o755); err != nil {
		return nil, err
	}
	// sshd refuses to start without its privilege separation directory; a fresh container lacks it.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		return nil, fmt.Errorf("failed to create privilege separation directory /run/sshd: %w", err)
	}

	if len(o.hostKeys) == 0 {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		o.hostKeys = []crypto.PrivateKey{k}
	}
	var hostKeyLines, knownKeys []string
	for i, k := range o.hostKeys {
		signer, pemBytes, err := signerAndPEM(k)
		if err != nil {
			return nil, fmt.Errorf("failed to encode host key %d: %w", i, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("ssh_host_key_%d", i))
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			return nil, err
		}
		if i == 0 && o.hostKeyPath != "" {
			path = o.hostKeyPath
		}
		hostKeyLines = append(hostKeyLines, "HostKey "+path)
		knownKeys = append(knownKeys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
		if i == 0 {
			s.HostSigner, s.HostKey, s.HostKeyPEM = signer, signer.PublicKey(), pemBytes
		}
	}

	if o.clientKey == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		o.clientKey = k
	}
	s.ClientSigner, s.ClientKeyPEM, err = signerAndPEM(o.clientKey)
	if err != nil {
		return nil, fmt.Errorf("failed to encode client key: %w", err)
	}
	if err := os.WriteFile(s.ClientKeyFile, s.ClientKeyPEM, 0o600); err != nil {
		return nil, err
	}
	var ak bytes.Buffer
	for _, k := range append([]ssh.PublicKey{s.ClientSigner.PublicKey()}, o.authorized...) {
		ak.Write(ssh.MarshalAuthorizedKey(k))
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ak.Bytes(), 0o600); err != nil {
		return nil, err
	}

	if err := s.writeWrapper(o); err != nil {
		return nil, err
	}
	s.hostKeyLines = hostKeyLines
	s.knownKeys = knownKeys
	s.extraConfig = o.extraConfig
	s.keysFiles = o.keysFiles
	if o.delayed {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if err := s.setPort(port); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// writeWrapper writes the ForceCommand script: PATH, environment, command log, then the shell.
func (s *Server) writeWrapper(o *options) error {
	for _, kv := range o.env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(name) {
			return fmt.Errorf("environment entry %q: want NAME=value", kv)
		}
	}
	path := append([]string{s.BinDir}, o.pathPrefix...)
	path = append(path, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	shell := `"${SHELL:-/bin/sh}"`
	if o.shell != "" {
		shell = shQuote(o.shell)
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by sshtest: every remote command runs through here.\n")
	fmt.Fprintf(&b, "PATH=%s; export PATH\n", shQuote(strings.Join(path, ":")))
	for _, kv := range o.env {
		name, value, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s=%s; export %s\n", name, shQuote(value), name)
	}
	fmt.Fprintf(&b, "printf '%%s\\0' \"$SSH_ORIGINAL_COMMAND\" >> %s\n", shQuote(s.cmdLog))
	b.WriteString("if [ -z \"${SSH_ORIGINAL_COMMAND+set}\" ]; then exec " + shell + " -l; fi\n")
	b.WriteString("exec " + shell + " -c \"$SSH_ORIGINAL_COMMAND\"\n")
	return os.WriteFile(filepath.Join(s.Dir, "session"), []byte(b.String()), 0o755)
}

// config renders sshd_config for the current port.
func (s *Server) config() string {
	lines := []string{
		"# Written by sshtest.",
		"ListenAddress " + s.Addr,
		"PidFile none",
		"LogLevel VERBOSE",
		"UsePAM no",
		"UseDNS no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AuthorizedKeysFile " + strings.Join(append([]string{filepath.Join(s.Dir, "authorized_keys")}, s.keysFiles...), " "),
		"AllowTcpForwarding yes",
		"MaxStartups 1000",
		"MaxSessions 1000",
		"MaxAuthTries 20",
		"LoginGraceTime 30",
		"ForceCommand " + filepath.Join(s.Dir, "session"),
		// Debian's bash sources ~/.bashrc when it thinks sshd started it (SSH_SOURCE_BASHRC) and
		// SHLVL is unset; the test machine's .bashrc is not the VM's and can take seconds.
		"SetEnv SHLVL=1",
	}
	if penaltiesSupported() {
		// OpenSSH 9.8 blocks addresses that fail to authenticate; tests do that on purpose.
		lines = append(lines, "PerSourcePenalties no")
	}
	lines = append(lines, s.hostKeyLines...)
	lines = append(lines, s.extraConfig...)
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) setPort(port int) error {
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var kh strings.Builder
	for _, k := range s.knownKeys {
		fmt.Fprintf(&kh, "[127.0.0.1]:%d %s\n", port, k)
	}
	if err := os.WriteFile(s.KnownHostsFile, []byte(kh.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(s.configFile, []byte(s.config()), 0o600)
}

// Listen starts a Delayed server and returns once sshd is accepting connections.
// Unlike Start it reports errors instead of failing the test, so any goroutine may call it.
func (s *Server) Listen() error {
	return s.listen(1)
}

func (s *Server) listen(tries int) error {
	var err error
	for i := 0; i < tries; i++ {
		if !s.fixedPort {
			port, perr := freePort()
			if perr != nil {
				return perr
			}
			if perr := s.setPort(port); perr != nil {
				return perr
			}
		}
		if err = s.startOnce(); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "Bind to port") {
			break
		}
	}
	return err
}

var listeningRE = regexp.MustCompile(`Server listening on \S+ port \d+`)

func (s *Server) startOnce() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("sshd is already running")
	}
	argv := append(append([]string(nil), s.wrapper...), SSHDPath, "-D", "-e", "-f", s.configFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	// Our own pipe rather than StderrPipe: every connection's sshd child inherits stderr, so the log
	// ends long after the listener exits, and Wait must not wait for that.
	stderr, w, err := os.Pipe()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd.Stderr = w
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = stderr.Close()
		s.mu.Unlock()
		return fmt.Errorf("failed to start %s: %w; %s", SSHDPath, err, InstallHint)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	exited := s.exited
	s.mu.Unlock()

	listening := make(chan struct{})
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		defer stderr.Close()
		var once sync.Once
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			now := time.Now()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			if listeningRE.MatchString(line) && s.listeningAt.IsZero() {
				s.listeningAt = now
				once.Do(func() { close(listening) })
			}
			s.mu.Unlock()
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	select {
	case <-listening:
		return nil
	case <-exited:
		s.mu.Lock()
		s.cmd = nil
		s.mu.Unlock()
		select { // let the log catch sshd's last words ("Bind to port ... failed")
		case <-logDone:
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("sshd exited before listening on %s: %s", s.Addr, s.Log())
	case <-time.After(15 * time.Second):
		return fmt.Errorf("sshd did not listen on %s within 15s: %s", s.Addr, s.Log())
	}
}

// ListeningAt is when sshd reported that it listens (the zero time before that).
func (s *Server) ListeningAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listeningAt
}

// Log returns what sshd has written so far (LogLevel VERBOSE).
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Commands returns every command a client ran, in order.
func (s *Server) Commands() []string {
	b, err := os.ReadFile(s.cmdLog)
	if err != nil {
		return nil
	}
	cmds := strings.Split(string(b), "\x00")
	return cmds[:len(cmds)-1]
}

// AddExecutable writes an executable named name into BinDir, first on the remote PATH.
// script is the whole file, shebang included, e.g. "#!/bin/sh\necho /dev/sda\n".
func (s *Server) AddExecutable(name, script string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.BinDir, name), []byte(script), 0o755); err != nil {
		s.t.Fatalf("sshtest: failed to add executable %q: %v", name, err)
	}
}

// ClientConfig returns a client configuration for User with ClientSigner and the pinned host key.
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:              s.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback:   ssh.FixedHostKey(s.HostKey),
		HostKeyAlgorithms: []string{s.HostKey.Type()},
		Timeout:           10 * time.Second,
	}
}

// SSHArgs returns arguments for the real ssh client that reach this server with strict host key
// checking, followed by extra (typically the remote command).
func (s *Server) SSHArgs(extra ...string) []string {
	args := []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(s.Port),
		"-i", s.ClientKeyFile,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHostsFile,
		"-o", "LogLevel=ERROR",
		s.User + "@127.0.0.1",
	}
	return append(args, extra...)
}

// Stop kills the listening sshd; established sessions go on, as with a real sshd restart.
// A stopped server can Listen again on the same port.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	// Sessions outlive the listener; remember them so KillSessions and the cleanup still find them.
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP)
	orphans := children(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	<-exited
	s.mu.Lock()
	s.orphans = append(s.orphans, orphans...)
	s.cmd = nil
	s.listeningAt = time.Time{}
	s.fixedPort = true
	s.mu.Unlock()
}

// KillSessions kills every process sshd forked: each connection drops at once, as when a VM
// crashes. The listener keeps accepting new connections.
func (s *Server) KillSessions() {
	s.mu.Lock()
	cmd := s.cmd
	orphans := s.orphans
	s.orphans = nil
	s.mu.Unlock()
	for _, pid := range orphans {
		// Sessions of an earlier, stopped listener; check the pid still is an sshd.
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sshd" {
			killTree(pid, true)
		}
	}
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	// Freeze the listener so it forks nothing while we walk its descendants.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }()
	killTree(pid, false)
}

// killTree kills every descendant of pid, and pid itself if self is set.
func killTree(pid int, self bool) {
	if self {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	for i := 0; i < 10; i++ {
		kids := descendants(pid)
		if len(kids) == 0 {
			break
		}
		for _, k := range kids {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if self {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (s *Server) cleanup() {
	s.KillSessions()
	s.Stop()
	if s.t.Failed() {
		if log := s.Log(); log != "" {
			s.t.Logf("sshtest: sshd log for %s:\n%s", s.Addr, log)
		}
	}
}

// children lists pid's direct children.
func children(pid int) []int {
	return processTree()[pid]
}

// descendants lists the processes below pid, read from /proc.
func descendants(pid int) []int {
	children := processTree()
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// processTree maps each live (not zombie) process's parent to its children.
func processTree() map[int][]int {
	children := map[int][]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return children
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces; the fields after the last ')' are fixed.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue // zombies are dead already; the frozen listener reaps them later
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	return children
}

func signerAndPEM(key crypto.PrivateKey) (ssh.Signer, []byte, error) {
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return nil, nil, err
	}
	return signer, pem.EncodeToMemory(block), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to reserve a loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	penaltiesOnce sync.Once
	penalties     bool
)

// penaltiesSupported reports whether sshd knows PerSourcePenalties (OpenSSH 9.8 and later).
func penaltiesSupported() bool {
	penaltiesOnce.Do(func() {
		out, _ := exec.Command(SSHDPath, "-V").CombinedOutput()
		m := regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`).FindSubmatch(out)
		if m == nil {
			return
		}
		major, _ := strconv.Atoi(string(m[1]))
		minor, _ := strconv.Atoi(string(m[2]))
		penalties = major > 9 || major == 9 && minor >= 8
	})
	return penalties
}

// shQuote quotes s for a POSIX shell (a copy of sshx.Quote: sshx's tests import this package).
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
