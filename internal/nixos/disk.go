package nixos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// ByIDDir is where udev keeps the stable names of block devices.
const ByIDDir = "/dev/disk/by-id"

// diskScript asks the running system which disk holds / and lists every
// by-id link with its resolved target, in one round trip. It prints
//
//	source<TAB>/dev/sda1
//	disk<TAB>sda
//	link<TAB>/dev/disk/by-id/wwn-0x...<TAB>/dev/sda
//
// and leaves the choosing to Go, where it is tested. It climbs lsblk's
// PKNAME until the top (a partition, or LVM and dm devices, sit on a disk)
// and strips findmnt's "[/subvol]" suffix (btrfs). POSIX sh: the login
// shell may be dash. No user input reaches it; byIDDir is a constant in
// production.
func diskScript(byIDDir string) string {
	return `set -eu
src=$(findmnt -no SOURCE /)
printf 'source\t%s\n' "$src"
dev=${src%%\[*}
i=0
while [ $i -lt 8 ]; do
  p=$(lsblk -no PKNAME "$dev" | head -n 1 | tr -d ' ')
  [ -n "$p" ] || break
  dev=/dev/$p
  i=$((i+1))
done
printf 'disk\t%s\n' "${dev#/dev/}"
for l in ` + byIDDir + `/*; do
  [ -L "$l" ] || continue
  printf 'link\t%s\t%s\n' "$l" "$(readlink -f "$l")"
done
`
}

// DetectDisk asks the running system (Ubuntu, before kexec) which disk holds
// / and returns that disk's stable /dev/disk/by-id/... path, for disko. Azure
// names the same disk sda on one boot and sdb on the next, and v6 sizes
// attach it as nvme0n1; the by-id name survives kexec and reboots.
//
// Among the links to the disk it prefers, in this order, wwn-*, nvme-eui.*,
// scsi-*, then anything else; ties go to the lexically smallest name, so the
// answer is the same on every run.
func DetectDisk(ctx context.Context, r Commander) (string, error) {
	return detectDisk(ctx, r, ByIDDir)
}

func detectDisk(ctx context.Context, r Commander, byIDDir string) (string, error) {
	out, err := r.Output(ctx, diskScript(byIDDir))
	if err != nil {
		return "", fmt.Errorf("failed to find the disk that holds /: %w", err)
	}
	return chooseDisk(out)
}

// Only names udev would make; disko puts the path into shell scripts unquoted.
var byIDNameRE = regexp.MustCompile(`^[A-Za-z0-9._:+@-]+$`)

func chooseDisk(out []byte) (string, error) {
	var source, disk string
	type link struct{ path, target string }
	var links []link
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		switch {
		case f[0] == "source" && len(f) == 2:
			source = f[1]
		case f[0] == "disk" && len(f) == 2:
			disk = f[1]
		case f[0] == "link" && len(f) == 3:
			links = append(links, link{f[1], f[2]})
		}
	}
	if source == "" || disk == "" {
		return "", fmt.Errorf("failed to find the disk that holds /: unexpected answer %q", prefix(string(out), 200))
	}
	if !strings.HasPrefix(source, "/dev/") || strings.ContainsAny(disk, "/ ") {
		return "", fmt.Errorf("failed to find the disk that holds /: / is on %q, not on a block device", source)
	}
	var names []string
	for _, l := range links {
		name := path.Base(l.path)
		// Compare kernel names: the link resolves to /dev/<disk>.
		if path.Base(l.target) == disk && byIDNameRE.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("failed to find a stable name for disk %q (/ is on %q): no link in %s resolves to it; is udev running on the target?", disk, source, ByIDDir)
	}
	sort.Slice(names, func(i, j int) bool {
		if ri, rj := diskRank(names[i]), diskRank(names[j]); ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	return ByIDDir + "/" + names[0], nil
}

// diskRank orders by-id names from most to least specific: a WWN or NVMe EUI
// names the device itself; scsi-* come from the SCSI inquiry data; the rest
// (nvme-<model>_<serial>, ata-*, ...) are generic.
func diskRank(name string) int {
	switch {
	case strings.HasPrefix(name, "wwn-"):
		return 0
	case strings.HasPrefix(name, "nvme-eui."):
		return 1
	case strings.HasPrefix(name, "scsi-"):
		return 2
	default:
		return 3
	}
}

// DetectSystem asks the running system for its CPU and returns the Nix
// system name nixos-images publishes a kexec installer for: x86_64-linux or
// aarch64-linux (nix-community/nixos-images build-images.sh; nixos-anywhere
// 1.13.0 refuses other architectures the same way).
func DetectSystem(ctx context.Context, r Commander) (string, error) {
	out, err := r.Output(ctx, "uname -m")
	if err != nil {
		return "", fmt.Errorf("failed to read the target's architecture (uname -m): %w", err)
	}
	switch m := strings.TrimSpace(string(out)); m {
	case "x86_64", "aarch64":
		return m + "-linux", nil
	default:
		return "", fmt.Errorf("the target's architecture %q has no NixOS kexec installer (x86_64 and aarch64 do)", m)
	}
}
