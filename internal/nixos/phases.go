package nixos

import (
	"strings"
	"sync"
	"time"
)

// PhaseTiming is one nixos-anywhere phase and how long it ran.
type PhaseTiming struct {
	Name     string
	Duration time.Duration
}

// PhaseName returns the phase a nixos-anywhere output line starts, if any.
// nixos-anywhere's step() prints `### <text> ###` (src/nixos-anywhere.sh):
// "Uploading install SSH keys", "Gathering machine facts", "Switching system
// into kexec", "Generating facter.json using nixos-facter", "Formatting hard
// drive with disko", "Uploading the system closure", "Installing NixOS",
// "Rebooting", "Waiting for the machine to become unreachable due to reboot",
// "Done!", and a few more for other options.
func PhaseName(line string) (string, bool) {
	line = strings.TrimRight(line, " \r")
	if len(line) < len("### x ###") || !strings.HasPrefix(line, "### ") || !strings.HasSuffix(line, " ###") {
		return "", false
	}
	name := strings.TrimSpace(line[len("### ") : len(line)-len(" ###")])
	if name == "" || strings.Contains(name, "###") {
		return "", false
	}
	return name, true
}

// abortPrefix is what nixos-anywhere's abort() prints, to stderr, before exit 1.
const abortPrefix = "aborted: "

// tailLines is how many output lines an error carries.
const tailLines = 20

// transcript follows nixos-anywhere's output: phases with their timings, the
// last lines, the abort message. Safe for one writer and concurrent readers.
type transcript struct {
	now func() time.Time

	mu      sync.Mutex
	phases  []PhaseTiming
	started time.Time // start of the running phase
	open    bool      // the last phase is still running
	tail    []string  // ring of the last tailLines lines, oldest first
	aborted string
}

// line records one output line and reports the phase it starts, if any.
func (t *transcript) line(l string) (phase string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.tail) == tailLines {
		copy(t.tail, t.tail[1:])
		t.tail = t.tail[:tailLines-1]
	}
	t.tail = append(t.tail, l)
	if msg, found := strings.CutPrefix(l, abortPrefix); found {
		t.aborted = strings.TrimSpace(msg)
	}
	phase, ok = PhaseName(l)
	if ok {
		now := t.now()
		t.closeLocked(now)
		t.phases = append(t.phases, PhaseTiming{Name: phase})
		t.started, t.open = now, true
	}
	return phase, ok
}

// finish ends the running phase.
func (t *transcript) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closeLocked(t.now())
}

func (t *transcript) closeLocked(now time.Time) {
	if t.open {
		t.phases[len(t.phases)-1].Duration = now.Sub(t.started)
		t.open = false
	}
}

func (t *transcript) snapshot() (phases []PhaseTiming, current string, tail []string, aborted string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	phases = append([]PhaseTiming(nil), t.phases...)
	if n := len(phases); n > 0 {
		current = phases[n-1].Name
	}
	return phases, current, append([]string(nil), t.tail...), t.aborted
}
