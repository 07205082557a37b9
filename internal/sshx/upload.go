package sshx

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"strings"
)

// UploadCommand is the remote command line Upload runs for dst and mode: the bytes arrive on
// standard input, never on the command line. umask 077 keeps the parent directories it creates
// private, and install(1) creates the file 0600 before it sets mode, so a secret is never readable
// by others, not even for a moment.
func UploadCommand(dst string, mode os.FileMode) string {
	return "umask 077 && " + Quote("mkdir", "-p", "--", path.Dir(dst)) + " && " +
		Quote("install", "-m", fmt.Sprintf("%04o", mode.Perm()), "--", "/dev/stdin", dst)
}

// UploadAsCommand is the remote command line UploadAs runs: as root, it
// runs a shell as user (runuser) that writes the bytes from standard input
// into a new file next to dst (mktemp, 0600), sets mode and renames it over
// dst. Whatever user planted in its own directories stays harmless: the
// writes and the rename are the user's own, and rename(2) (mv -T) replaces a
// symlink at dst instead of following it, where root writing and then
// chown-ing would follow it to any file on the machine.
func UploadAsCommand(user, dst string, mode os.FileMode) string {
	const script = `umask 077 && mkdir -p -- "$(dirname -- "$1")" && tmp=$(mktemp -- "$1.XXXXXX") && ` +
		`{ cat >"$tmp" && chmod "$2" "$tmp" && mv -fT -- "$tmp" "$1" || { rm -f -- "$tmp"; exit 1; }; }`
	return Quote("runuser", "-u", user, "--", "sh", "-c", script, "sh", dst, fmt.Sprintf("%04o", mode.Perm()))
}

// UploadAs is Upload for a file that belongs to user, written by user
// (UploadAsCommand); the session must be root's.
func (c *Client) UploadAs(ctx context.Context, user string, data []byte, dst string, mode os.FileMode) error {
	if dst == "" || strings.HasSuffix(dst, "/") || user == "" {
		return fmt.Errorf("failed to upload to %q as %q on %q: want a file path and a user", dst, user, c.addr)
	}
	if err := c.Run(ctx, UploadAsCommand(user, dst, mode), WithStdin(bytes.NewReader(data))); err != nil {
		return fmt.Errorf("failed to upload %d bytes to %q as %s on %q: %w", len(data), dst, user, c.addr, err)
	}
	return nil
}

// Upload writes data to the remote file dst (created or replaced) with mode, creating missing
// parent directories. It needs only a POSIX shell and install(1) on the remote side, no scp or sftp.
func (c *Client) Upload(ctx context.Context, data []byte, dst string, mode os.FileMode) error {
	if dst == "" || strings.HasSuffix(dst, "/") {
		return fmt.Errorf("failed to upload to %q on %q: want a file path", dst, c.addr)
	}
	if err := c.Run(ctx, UploadCommand(dst, mode), WithStdin(bytes.NewReader(data))); err != nil {
		return fmt.Errorf("failed to upload %d bytes to %q on %q: %w", len(data), dst, c.addr, err)
	}
	return nil
}
