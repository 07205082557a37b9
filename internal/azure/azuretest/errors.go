package azuretest

import (
	"crypto/rand"
	"net/http"
)

// armError is the body ARM sends on failure: {"error":{"code":"...","message":"..."}}.
type armError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

type errorBody struct {
	Error armError `json:"error"`
}

// apiError is an error response the handlers return instead of writing it themselves.
type apiError struct {
	status int
	armError
}

func newAPIError(status int, code, message string) *apiError {
	return &apiError{status: status, armError: armError{Code: code, Message: message}}
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("x-ms-failure-cause", "gateway")
	writeJSON(w, status, errorBody{Error: armError{Code: code, Message: message}})
}

func (a *apiError) write(w http.ResponseWriter) {
	w.Header().Set("x-ms-failure-cause", "gateway")
	writeJSON(w, a.status, errorBody{Error: a.armError})
}

func randRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
}
