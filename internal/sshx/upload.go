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
