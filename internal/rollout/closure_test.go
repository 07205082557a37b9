package rollout

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDrvName(t *testing.T) {
	t.Parallel()
	// Cases from NixOS/nix src/libstore/names.cc's comment and real store
	// path names.
	for _, tc := range []struct{ in, name, version string }{
		{"apache-httpd-2.0.48", "apache-httpd", "2.0.48"},
		{"openssh-10.0p2", "openssh", "10.0p2"},
		{"nixos-system-az-nixos-26.05.20260601.abcdef0", "nixos-system-az-nixos", "26.05.20260601.abcdef0"},
		{"etc", "etc", ""},
		{"python3.12-requests-2.32.3", "python3.12-requests", "2.32.3"},
		{"linux-6.12.30-modules", "linux", "6.12.30-modules"},
		{"unit-sshd.service", "unit-sshd.service", ""},
	} {
		n, v := ParseDrvName(tc.in)
		if n != tc.name || v != tc.version {
			t.Errorf("ParseDrvName(%q) = %q, %q; want %q, %q", tc.in, n, v, tc.name, tc.version)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	// Cases from Nix's own tests (tests/functional/lang/eval-okay-versions
	// and the comments in names.cc).
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.0", "2.3", -1},
		{"2.1", "2.3", -1},
		{"2.3", "2.3", 0},
		{"2.5", "2.3", 1},
		{"3.1", "2.3", 1},
		{"2.3.1", "2.3", 1},
		{"2.3.1", "2.3a", 1},
		{"2.3pre1", "2.3", -1},
		{"2.3pre3", "2.3pre12", -1},
		{"2.3a", "2.3c", -1},
		{"2.3pre1", "2.3c", -1},
		{"2.3pre1", "2.3q", -1},
		{"9.9p1", "10.0p2", -1},
	} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestRenderSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0.0 KiB"},
		{500, "+0.5 KiB"},
		{-8192, "-8.0 KiB"},
		{1 << 20, "+1024.0 KiB"}, // Nix moves up a unit only above 1024
		{3 << 20, "+3.0 MiB"},
		{-5 << 30, "-5.0 GiB"},
	} {
		if got := RenderSize(tc.n); got != tc.want {
			t.Errorf("RenderSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestDiffClosures(t *testing.T) {
	t.Parallel()
	before := []PathInfo{
		{"/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-openssh-9.9p1", 4 << 20},
		{"/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-htop-3.3.0", 300 << 10},
		{"/nix/store/cccccccccccccccccccccccccccccccc-etc", 100 << 10},
		{"/nix/store/dddddddddddddddddddddddddddddddd-glibc-2.40-66", 30 << 20},
		{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-glibc-2.40-66-bin", 2 << 20},
		{"/nix/store/ffffffffffffffffffffffffffffffff-nixos-system-az-nixos-26.05.1", 10 << 10},
		{"/nix/store/gggggggggggggggggggggggggggggggg-curl-8.12.0", 1 << 20},
	}
	after := []PathInfo{
		{"/nix/store/1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-openssh-10.0p2", 4<<20 + 20<<10},
		{"/nix/store/1ccccccccccccccccccccccccccccccc-etc", 140 << 10},
		{"/nix/store/dddddddddddddddddddddddddddddddd-glibc-2.40-66", 30 << 20},
		{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-glibc-2.40-66-bin", 2 << 20},
		{"/nix/store/1fffffffffffffffffffffffffffffff-nixos-system-az-nixos-26.05.2", 10 << 10},
		{"/nix/store/1hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh-ripgrep-14.1.1", 5 << 20},
		{"/nix/store/1ggggggggggggggggggggggggggggggg-curl-8.11.1", 1 << 20},
	}
	d := DiffClosures(before, after)
	want := []string{
		"curl: 8.12.0 → 8.11.1",
		"etc: +40.0 KiB",
		"htop: 3.3.0 → ∅, -300.0 KiB",
		"nixos-system-az-nixos: 26.05.1 → 26.05.2",
		"openssh: 9.9p1 → 10.0p2, +20.0 KiB",
		"ripgrep: ∅ → 14.1.1, +5.0 MiB",
	}
	if diff := cmp.Diff(want, d.Lines()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if got, want := d.Summary(), "2 upgraded, 1 downgraded, 1 added, 1 removed, 1 resized"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	if want := int64(5<<20 + 20<<10 + 40<<10 - 300<<10); d.SizeDelta != want {
		t.Errorf("size delta %d, want %d", d.SizeDelta, want)
	}
	if same := DiffClosures(before, before); len(same.Changes) != 0 || same.Summary() != "no package changes" {
		t.Errorf("a closure against itself: %+v", same)
	}
}
