package nixos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/sshtest"
)

// sshCommander is a minimal Commander over golang.org/x/crypto/ssh, so these
// tests do not depend on internal/sshx.
type sshCommander struct{ c *ssh.Client }

func dialCommander(t *testing.T, s *sshtest.Server) sshCommander {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("ssh dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return sshCommander{c}
}

func (s sshCommander) Output(ctx context.Context, cmd string) ([]byte, error) {
	sess, err := s.c.NewSession()
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	out, err := sess.Output(cmd)
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// diskEnv is a scripted block-device world on the target.
type diskEnv struct {
	findmnt string            // findmnt -no SOURCE / prints this; "" means findmnt fails
	parents map[string]string // lsblk -no PKNAME <dev> answers
	links   map[string]string // by-id name -> kernel name it points at
}

// start runs a real sshd whose remote PATH has fake findmnt and lsblk, and
// lays out <dir>/dev/disk/by-id with relative symlinks like udev's.
func (e diskEnv) start(t *testing.T) (sshCommander, string, *sshtest.Server) {
	t.Helper()
	root := t.TempDir()
	byID := filepath.Join(root, "dev", "disk", "by-id")
	if err := os.MkdirAll(byID, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range e.links {
		if err := os.Symlink("../../"+target, filepath.Join(byID, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The target shell is dash, as a POSIX check.
	s := sshtest.Start(t, sshtest.WithShell("/bin/dash"))
	if e.findmnt == "" {
		s.AddExecutable("findmnt", "#!/bin/sh\necho 'findmnt: can not find /' >&2\nexit 1\n")
	} else {
		s.AddExecutable("findmnt", fmt.Sprintf("#!/bin/sh\n[ \"$*\" = \"-no SOURCE /\" ] || { echo \"findmnt: unexpected $*\" >&2; exit 2; }\necho '%s'\n", e.findmnt))
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n[ \"$1 $2\" = \"-no PKNAME\" ] || { echo \"lsblk: unexpected $*\" >&2; exit 2; }\ncase \"$3\" in\n")
	devs := make([]string, 0, len(e.parents))
	for dev := range e.parents {
		devs = append(devs, dev)
	}
	sort.Strings(devs)
	for _, dev := range devs {
		// lsblk prints an empty line for a disk without a parent.
		fmt.Fprintf(&b, "%s) echo '%s' ;;\n", dev, e.parents[dev])
	}
	b.WriteString("*) echo \"lsblk: $3: not a block device\" >&2; exit 32 ;;\nesac\n")
	s.AddExecutable("lsblk", b.String())
	return dialCommander(t, s), byID, s
}

// TestDetectDiskOverSSH asks a real sshd with scripted findmnt and lsblk.
func TestDetectDiskOverSSH(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     diskEnv
		want    string
		wantErr string
	}{
		{
			name: "azure scsi",
			env: diskEnv{
				findmnt: "/dev/sda1",
				parents: map[string]string{"/dev/sda1": "sda", "/dev/sda": ""},
				links: map[string]string{
					"scsi-3600224800000000000000000000abcd":        "sda",
					"scsi-3600224800000000000000000000abcd-part1":  "sda1",
					"wwn-0x6002248000000000000000000000abcd":       "sda",
					"wwn-0x6002248000000000000000000000abcd-part1": "sda1",
					// The resource disk, mounted on /mnt.
					"scsi-360022480ffffffffffffffffffff0001": "sdb",
					"wwn-0x60022480ffffffffffffffffffff0001": "sdb",
				},
			},
			want: "/dev/disk/by-id/wwn-0x6002248000000000000000000000abcd",
		},
		{
			name: "azure scsi without wwn",
			env: diskEnv{
				findmnt: "/dev/sdb1",
				parents: map[string]string{"/dev/sdb1": "sdb", "/dev/sdb": ""},
				links: map[string]string{
					"scsi-SMsft_Virtual_Disk_1234":           "sdb",
					"scsi-3600224800000000000000000000abcd":  "sdb",
					"ata-Virtual_Disk_1234":                  "sdb",
					"scsi-3600224800000000000000000000abcd1": "sdb1",
				},
			},
			want: "/dev/disk/by-id/scsi-3600224800000000000000000000abcd",
		},
		{
			name: "azure nvme",
			env: diskEnv{
				findmnt: "/dev/nvme0n1p1",
				parents: map[string]string{"/dev/nvme0n1p1": "nvme0n1", "/dev/nvme0n1": ""},
				links: map[string]string{
					"nvme-MSFT_NVMe_Accelerator_v1.0_SN_000001":         "nvme0n1",
					"nvme-MSFT_NVMe_Accelerator_v1.0_SN_000001-part1":   "nvme0n1p1",
					"nvme-eui.0025384b21406e58":                         "nvme0n1",
					"nvme-nvme.1414-534e5f303030303031-4d5346-00000001": "nvme0n1",
					"nvme-eui.00253840000000ff":                         "nvme1n1",
				},
			},
			want: "/dev/disk/by-id/nvme-eui.0025384b21406e58",
		},
		{
			name: "nvme without eui",
			env: diskEnv{
				findmnt: "/dev/nvme0n1p2",
				parents: map[string]string{"/dev/nvme0n1p2": "nvme0n1", "/dev/nvme0n1": ""},
				links: map[string]string{
					"nvme-nvme.1414-534e5f303030303031-4d5346-00000001": "nvme0n1",
					"nvme-MSFT_NVMe_Accelerator_v1.0_SN_000001":         "nvme0n1",
				},
			},
			want: "/dev/disk/by-id/nvme-MSFT_NVMe_Accelerator_v1.0_SN_000001",
		},
		{
			name: "btrfs subvolume",
			env: diskEnv{
				findmnt: "/dev/sda2[/@]",
				parents: map[string]string{"/dev/sda2": "sda", "/dev/sda": ""},
				links:   map[string]string{"wwn-0x5000c500a1b2c3d4": "sda"},
			},
			want: "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
		},
		{
			name: "lvm",
			env: diskEnv{
				findmnt: "/dev/mapper/ubuntu--vg-root",
				parents: map[string]string{"/dev/mapper/ubuntu--vg-root": "sda3", "/dev/sda3": "sda", "/dev/sda": ""},
				links: map[string]string{
					"dm-name-ubuntu--vg-root":      "dm-0",
					"wwn-0x5000c500a1b2c3d4-part3": "sda3",
					"wwn-0x5000c500a1b2c3d4":       "sda",
				},
			},
			want: "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
		},
		{
			name: "no stable name",
			env: diskEnv{
				findmnt: "/dev/sda1",
				parents: map[string]string{"/dev/sda1": "sda", "/dev/sda": ""},
				links:   map[string]string{"wwn-0x60022480ffffffffffffffffffff0001": "sdb"},
			},
			wantErr: `failed to find a stable name for disk "sda" (/ is on "/dev/sda1"): no link in /dev/disk/by-id resolves to it`,
		},
		{
			name: "unsafe name skipped",
			env: diskEnv{
				findmnt: "/dev/sda1",
				parents: map[string]string{"/dev/sda1": "sda", "/dev/sda": ""},
				links:   map[string]string{"wwn-0x1$(reboot)": "sda", "scsi-3600224800000000000000000000abcd": "sda"},
			},
			want: "/dev/disk/by-id/scsi-3600224800000000000000000000abcd",
		},
		{
			name: "not a block device",
			env: diskEnv{
				findmnt: "overlay",
				parents: map[string]string{"overlay": ""},
			},
			wantErr: `/ is on "overlay", not on a block device`,
		},
		{
			name:    "findmnt fails",
			env:     diskEnv{},
			wantErr: "failed to find the disk that holds /: Process exited with status 1: findmnt: can not find /",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, byID, srv := tc.env.start(t)
			got, err := detectDisk(context.Background(), r, byID)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DetectDisk = %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DetectDisk: %v", err)
			}
			if got != tc.want {
				t.Errorf("DetectDisk = %q, want %q", got, tc.want)
			}
			if n := len(srv.Commands()); n != 1 {
				t.Errorf("DetectDisk ran %d remote commands, want 1", n)
			}
		})
	}
}

func TestChooseDiskRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, out := range []string{"", "hello\n", "source\t/dev/sda1\n", "disk\tsda\n", "source\t/dev/sda1\ndisk\ts/da\n"} {
		if got, err := chooseDisk([]byte(out)); err == nil {
			t.Errorf("chooseDisk(%q) = %q, want an error", out, got)
		}
	}
}

func BenchmarkChooseDisk(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("source\t/dev/sda1\ndisk\tsda\n")
	for i := range 64 {
		fmt.Fprintf(&buf, "link\t/dev/disk/by-id/scsi-3600224800000000000000000%05d\t/dev/sd%c\n", i, 'a'+rune(i%4))
	}
	fmt.Fprintf(&buf, "link\t/dev/disk/by-id/wwn-0x6002248000000000000000000000abcd\t/dev/sda\n")
	out := buf.Bytes()
	for b.Loop() {
		if _, err := chooseDisk(out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/choice")
}

func TestDetectSystem(t *testing.T) {
	t.Parallel()
	for out, want := range map[string]string{"x86_64\n": "x86_64-linux", "aarch64\n": "aarch64-linux", "armv7l\n": `architecture "armv7l" has no NixOS kexec installer`} {
		got, err := DetectSystem(context.Background(), CommanderFunc(func(_ context.Context, cmd string) ([]byte, error) {
			if cmd != "uname -m" {
				t.Errorf("ran %q", cmd)
			}
			return []byte(out), nil
		}))
		if err != nil {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("DetectSystem(%q) error %v, want %q", out, err, want)
			}
			continue
		}
		if got != want {
			t.Errorf("DetectSystem(%q) = %q, want %q", out, got, want)
		}
	}
}
