package sshx

import "strings"

// Quote quotes each argument for a POSIX shell and joins them with spaces, so that the remote
// shell (sh, dash, bash, zsh) hands the command exactly these arguments. It is the one function
// every remote command line goes through.
//
// Arguments made only of letters, digits and _-./,:@%+ stay as they are; anything else is put in
// single quotes, where each single quote becomes (close, escaped quote, reopen):
//
//	'\''
//
// '=' and '~' are quoted too, so that a first word never turns into a variable assignment and
// nothing is tilde-expanded. A NUL byte cannot be passed to a remote command at all; Run and Output
// refuse command lines that contain one.
func Quote(args ...string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		quoteArg(&b, a)
	}
	return b.String()
}

func quoteArg(b *strings.Builder, s string) {
	if s != "" && strings.IndexFunc(s, unsafeRune) < 0 {
		b.WriteString(s)
		return
	}
	b.WriteByte('\'')
	b.WriteString(strings.ReplaceAll(s, "'", `'\''`))
	b.WriteByte('\'')
}

// unsafeRune reports whether r needs quoting. Bytes that are not valid UTF-8 decode to
// utf8.RuneError, which is not in the safe set, so they are always quoted.
func unsafeRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	case strings.ContainsRune("_-./,:@%+", r):
		return false
	}
	return true
}
