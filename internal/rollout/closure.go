package rollout

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// PathInfo is one store path of a closure with its NAR size.
type PathInfo struct {
	Path    string
	NarSize int64
}

// Change is one package whose versions differ between two closures, or
// whose size changed by 8 KiB or more.
type Change struct {
	Name    string
	Removed []string // versions only in the old closure ("" is "no version")
	Added   []string // versions only in the new closure
	// SizeDelta is the change of the package's NAR size in bytes.
	SizeDelta int64
}

// Kind says what kind of change c is, for the summary's counts.
func (c Change) Kind() string {
	switch {
	case len(c.Removed) == 0 && len(c.Added) > 0:
		return "added"
	case len(c.Added) == 0 && len(c.Removed) > 0:
		return "removed"
	case len(c.Added) == 0 && len(c.Removed) == 0:
		return "resized"
	}
	if CompareVersions(slices.Max(c.Removed), slices.Max(c.Added)) > 0 {
		return "downgraded"
	}
	return "upgraded"
}

// Diff is the difference between two system closures, the way `nix store
// diff-closures` computes it.
type Diff struct {
	Changes []Change // by package name
	// SizeDelta is the change of the closure's total NAR size.
	SizeDelta int64
}

// Counts tallies the changes by kind.
func (d Diff) Counts() map[string]int {
	n := map[string]int{}
	for _, c := range d.Changes {
		n[c.Kind()]++
	}
	return n
}

// Summary is a one-line account: "3 upgraded, 1 added, 2 removed".
func (d Diff) Summary() string {
	n := d.Counts()
	var parts []string
	for _, k := range []string{"upgraded", "downgraded", "added", "removed", "resized"} {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
		}
	}
	if len(parts) == 0 {
		return "no package changes"
	}
	return strings.Join(parts, ", ")
}

// Lines renders the diff as `nix store diff-closures` prints it, one
// package a line: "openssh: 9.9p1 → 10.0p2, +12.3 KiB".
func (d Diff) Lines() []string {
	out := make([]string, 0, len(d.Changes))
	for _, c := range d.Changes {
		var items []string
		if len(c.Removed) > 0 || len(c.Added) > 0 {
			items = append(items, showVersions(c.Removed)+" → "+showVersions(c.Added))
		}
		if abs(c.SizeDelta) >= sizeThreshold {
			items = append(items, RenderSize(c.SizeDelta))
		}
		out = append(out, c.Name+": "+strings.Join(items, ", "))
	}
	return out
}

// sizeThreshold: diff-closures shows a size change from 8 KiB on.
const sizeThreshold = 8 * 1024

// outputSuffixRE strips an output name from a store path name; the
// ambiguity (an output "bin" and a version "unstable" look alike) is Nix's
// own (NixOS/nix src/nix/diff-closures.cc, getClosureInfo).
var outputSuffixRE = regexp.MustCompile(`^(.*)-([a-z]+|lib32|lib64)$`)

// DiffClosures compares two closures by package name and version, as
// NixOS/nix src/nix/diff-closures.cc (printClosureDiff) does: paths are
// grouped by name (the store path name without its output suffix, split by
// DrvName), a package is listed when its set of versions changed or its
// total size moved by 8 KiB or more.
func DiffClosures(before, after []PathInfo) Diff {
	b, a := groupClosure(before), groupClosure(after)
	names := map[string]bool{}
	for n := range b {
		names[n] = true
	}
	for n := range a {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	var d Diff
	for _, name := range sorted {
		bv, av := b[name], a[name]
		c := Change{Name: name, SizeDelta: bv.total() - av.total()}
		c.SizeDelta = -c.SizeDelta
		for v := range bv {
			if _, ok := av[v]; !ok {
				c.Removed = append(c.Removed, v)
			}
		}
		for v := range av {
			if _, ok := bv[v]; !ok {
				c.Added = append(c.Added, v)
			}
		}
		slices.Sort(c.Removed)
		slices.Sort(c.Added)
		if len(c.Removed) > 0 || len(c.Added) > 0 || abs(c.SizeDelta) >= sizeThreshold {
			d.Changes = append(d.Changes, c)
		}
	}
	for _, p := range after {
		d.SizeDelta += p.NarSize
	}
	for _, p := range before {
		d.SizeDelta -= p.NarSize
	}
	return d
}

// versions maps a version to the summed size of its paths.
type versions map[string]int64

func (v versions) total() int64 {
	var n int64
	for _, s := range v {
		n += s
	}
	return n
}

func groupClosure(paths []PathInfo) map[string]versions {
	g := map[string]versions{}
	for _, p := range paths {
		name := storePathName(p.Path)
		if m := outputSuffixRE.FindStringSubmatch(name); m != nil {
			name = m[1]
		}
		n, v := ParseDrvName(name)
		if g[n] == nil {
			g[n] = versions{}
		}
		g[n][v] += p.NarSize
	}
	return g
}

// storePathName is the name part of /nix/store/<hash>-<name>.
func storePathName(p string) string {
	base := p[strings.LastIndexByte(p, '/')+1:]
	if i := strings.IndexByte(base, '-'); i >= 0 {
		return base[i+1:]
	}
	return base
}

// ParseDrvName splits a derivation name as Nix does (NixOS/nix
// src/libstore/names.cc, DrvName::DrvName): the name is everything up to
// the first dash not followed by a letter, the version the rest.
func ParseDrvName(s string) (name, version string) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && !isASCIILetter(s[i+1]) {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func isASCIILetter(c byte) bool { return c < 0x80 && unicode.IsLetter(rune(c)) }

func showVersions(vs []string) string {
	if len(vs) == 0 {
		return "∅"
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		if v == "" {
			v = "ε"
		}
		out[i] = v
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// CompareVersions orders two versions as Nix does (NixOS/nix
// src/libstore/names.cc, compareVersions): component by component, numbers
// numerically, "pre" before anything, a number after a word.
func CompareVersions(v1, v2 string) int {
	p1, p2 := v1, v2
	for p1 != "" || p2 != "" {
		var c1, c2 string
		c1, p1 = nextComponent(p1)
		c2, p2 = nextComponent(p2)
		if componentLess(c1, c2) {
			return -1
		}
		if componentLess(c2, c1) {
			return 1
		}
	}
	return 0
}

func nextComponent(s string) (comp, rest string) {
	s = strings.TrimLeft(s, ".-")
	if s == "" {
		return "", ""
	}
	i := 0
	if isDigit(s[0]) {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	} else {
		for i < len(s) && !isDigit(s[i]) && s[i] != '.' && s[i] != '-' {
			i++
		}
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func componentLess(c1, c2 string) bool {
	n1, err1 := strconv.Atoi(c1)
	n2, err2 := strconv.Atoi(c2)
	switch {
	case err1 == nil && err2 == nil:
		return n1 < n2
	case c1 == "" && err2 == nil:
		return true
	case c1 == "pre" && c2 != "pre":
		return true
	case c2 == "pre":
		return false
	case err2 == nil: // "2.3a" < "2.3.1"
		return true
	case err1 == nil:
		return false
	}
	return c1 < c2
}

// RenderSize renders a byte count as Nix's renderSize does (NixOS/nix
// src/libutil/util.cc, getSizeUnit and renderSizeWithoutUnit): the unit
// grows while the magnitude exceeds 1024, at least KiB, one decimal.
// Growth gets a '+', as diff-closures printed it before it switched to
// renderSize (commit 9d4d10954a): a delta reads better with its sign.
func RenderSize(n int64) string {
	units := []string{"KiB", "KiB", "MiB", "GiB", "TiB", "PiB"} // bytes show as KiB
	unit := 0
	for a := uint64(abs(n)); a > 1024 && unit < len(units)-1; a /= 1024 {
		unit++
	}
	s := strconv.FormatFloat(float64(n)/math.Pow(1024, float64(max(unit, 1))), 'f', 1, 64)
	if n > 0 {
		s = "+" + s
	}
	return s + " " + units[unit]
}

// RenderBytes is RenderSize without a sign, for sizes that are not deltas.
func RenderBytes(n int64) string { return strings.TrimPrefix(RenderSize(n), "+") }

func abs(n int64) int64 { return max(n, -n) }

// SortPaths orders path infos by path, for stable output.
func SortPaths(ps []PathInfo) {
	slices.SortFunc(ps, func(a, b PathInfo) int { return cmp.Compare(a.Path, b.Path) })
}
