package config

import (
	"errors"
	"fmt"
)

// FieldError is one invalid input: which input, the value given and the rule
// it breaks. The value of a secret input is never kept.
type FieldError struct {
	Input string
	Value string
	Rule  string
	// Secret is true when Value was withheld because the input is secret.
	Secret bool
}

func (e *FieldError) Error() string {
	if e.Secret {
		return fmt.Sprintf("%s (secret, value not shown): %s", e.Input, e.Rule)
	}
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Input, e.Rule)
	}
	return fmt.Sprintf("%s %q: %s", e.Input, e.Value, e.Rule)
}

// FieldErrors lists every invalid input found in one pass.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *FieldError
		switch x := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		default:
			if errors.As(err, &fe) {
				out = append(out, fe)
			}
		}
	}
	walk(err)
	return out
}
