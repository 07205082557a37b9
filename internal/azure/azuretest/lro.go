package azuretest

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	statusInProgress = "InProgress"
	statusSucceeded  = "Succeeded"
	statusFailed     = "Failed"
)

// operation is a long-running operation, polled through Azure-AsyncOperation or Location.
type operation struct {
	id, sub, ns, loc string
	apiVersion       string
	status           string
	err              *armError
	errStatus        int // HTTP status of a failed Location poll
	start, end       time.Time
	// output is the operation's result: properties.output of the status document and the body of
	// the final Location GET (runCommand). Nil means the final Location GET answers 200 without a body.
	output any
}

// startOperation registers an operation and runs it after latency in the background. run receives the
// failure an injected fault asks for (nil normally) and returns the operation's error, if any; it does
// its own locking. The returned operation is already registered for polling.
func (e *Emulator) startOperation(c *call, loc string, latency time.Duration, run func(ctx context.Context, fail *armError) (*armError, any)) *operation {
	var fail *armError
	if f := e.takeFault(c.r, c.t, true); f != nil {
		_, a := f.armError(e, c, loc)
		fail = &a
	}
	ns := c.t.ns
	if ns == "" {
		ns = "Microsoft.Resources"
	}
	if loc == "" {
		loc = "local"
	}
	op := &operation{
		id:         e.newID(),
		sub:        c.t.sub,
		ns:         ns,
		loc:        normLocation(loc),
		apiVersion: c.r.URL.Query().Get("api-version"),
		status:     statusInProgress,
		start:      time.Now().UTC(),
	}
	e.mu.Lock()
	e.ops[strings.ToLower(op.id)] = op
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if !e.sleep(e.ctx, latency) {
			return
		}
		aerr, out := run(e.ctx, fail)
		e.mu.Lock()
		defer e.mu.Unlock()
		op.end = time.Now().UTC()
		op.output = out
		if aerr != nil {
			op.status, op.err, op.errStatus = statusFailed, aerr, http.StatusConflict
			return
		}
		op.status = statusSucceeded
	}()
	return op
}

func (e *Emulator) operationURL(op *operation, kind string) string {
	return e.URL() + "/subscriptions/" + op.sub + "/providers/" + op.ns + "/locations/" + op.loc + "/" + kind + "/" + op.id +
		"?api-version=" + op.apiVersion
}

// writeAccepted answers the request that started op: Azure-AsyncOperation (when async), Location (when
// withLocation) and the body (nil for none).
func (e *Emulator) writeAccepted(w http.ResponseWriter, op *operation, status int, async, withLocation bool, body any) {
	if async {
		w.Header().Set("Azure-AsyncOperation", e.operationURL(op, "operations"))
	}
	if withLocation {
		w.Header().Set("Location", e.operationURL(op, "operationResults"))
	}
	e.setPollRetryAfter(w)
	if body == nil {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, body)
}

func (e *Emulator) setPollRetryAfter(w http.ResponseWriter) {
	if d := e.opts.PollRetryAfter; d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		w.Header().Set("retry-after-ms", strconv.FormatInt(d.Milliseconds(), 10))
	}
}

type operationStatus struct {
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	StartTime  string    `json:"startTime"`
	EndTime    string    `json:"endTime,omitempty"`
	Error      *armError `json:"error,omitempty"`
	Properties any       `json:"properties,omitempty"`
}

func (e *Emulator) serveOperation(w http.ResponseWriter, r *http.Request, t target) {
	e.mu.Lock()
	op, ok := e.ops[strings.ToLower(t.opID)]
	var st operationStatus
	if ok {
		st = operationStatus{Name: op.id, Status: op.status, StartTime: op.start.Format(time.RFC3339Nano), Error: op.err}
		if !op.end.IsZero() {
			st.EndTime = op.end.Format(time.RFC3339Nano)
		}
		if op.output != nil && op.status == statusSucceeded {
			st.Properties = map[string]any{"output": op.output}
		}
	}
	e.mu.Unlock()
	if !ok || r.Method != http.MethodGet {
		writeError(w, http.StatusNotFound, "OperationNotFound", "The operation '"+t.opID+"' could not be found.")
		return
	}
	if t.kind == kindOperation {
		if st.Status == statusInProgress {
			e.setPollRetryAfter(w)
		}
		writeJSON(w, http.StatusOK, st)
		return
	}
	switch st.Status {
	case statusInProgress:
		e.setPollRetryAfter(w)
		w.Header().Set("Location", e.operationURL(op, "operationResults"))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	case statusFailed:
		writeJSON(w, op.errStatus, errorBody{Error: *st.Error})
	default:
		if st.Properties == nil {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		}
		e.mu.Lock()
		out := op.output
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	}
}

func normLocation(l string) string { return strings.ToLower(strings.ReplaceAll(l, " ", "")) }
