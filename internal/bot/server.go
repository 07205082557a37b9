package bot

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// maxPayload caps a delivery's body. GitHub caps payloads at 25 MB (docs,
// "Webhook events and payloads": larger ones are not delivered), but the
// events the bot accepts are far smaller: an issue_comment payload carries
// two bodies of at most 65,536 characters (the comment and its issue; a
// longer one is refused with "Body is too long (maximum is 65536
// characters)"), at most about 800 KB even if every character were a
// six-byte JSON escape, plus a few kilobytes of repository and user
// objects; workflow_run and workflow_job payloads are tens of kilobytes.
// Anything larger is refused before the signature check reads it all.
const maxPayload = 1 << 20

// readBudget bounds the bytes of bodies being read at once, so that
// unsigned posts cost at most this much memory however many arrive. A body
// takes its Content-Length from it, one without a length maxPayload: the
// usual 10-30 KB deliveries never wait for each other, large ones do.
const readBudget = 32 << 20

// ServerOptions configure a Server.
type ServerOptions struct {
	Secret     []byte // webhook secret; required
	Workers    int    // default 8
	QueueSize  int    // default 1000
	Deliveries int    // delivery ids remembered for de-duplication; default 10000
	Logger     *slog.Logger
}

// Server is the webhook intake: it verifies, de-duplicates and triages a
// delivery on the request path, answers 202 at once, and leaves the API
// calls to a bounded worker queue.
type Server struct {
	h     *Handler
	o     ServerOptions
	log   *slog.Logger
	seen  *deliveries
	queue *queue
	// reading is the readBudget, in bytes.
	reading *semaphore.Weighted
}

// NewServer starts the workers. Call Drain (or Serve) to stop them.
func NewServer(h *Handler, o ServerOptions) (*Server, error) {
	if len(o.Secret) == 0 {
		return nil, errors.New("no webhook secret: set BOT_WEBHOOK_SECRET to the secret configured on the GitHub App's webhook; the bot refuses unsigned deliveries")
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1000
	}
	if o.Deliveries <= 0 {
		o.Deliveries = 10000
	}
	if o.Logger == nil {
		o.Logger = h.o.Logger
	}
	s := &Server{h: h, o: o, log: o.Logger, seen: newDeliveries(o.Deliveries), reading: semaphore.NewWeighted(readBudget)}
	s.queue = newQueue(o.Workers, o.QueueSize, s.work)
	return s, nil
}

// Handler routes POST /webhook and GET /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", s.webhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok queued=%d\n", s.queue.len())
	})
	return mux
}

type job struct {
	delivery, event string
	payload         []byte
}

// verify checks X-Hub-Signature-256 ("sha256=" + hex HMAC-SHA256 of the
// body) in constant time. The SHA-1 X-Hub-Signature is not accepted.
func verify(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value for a body (tests, tools).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// readBody reads a delivery's body, at most maxPayload bytes, within the
// readBudget; the status says why it could not.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	if r.ContentLength > maxPayload {
		return nil, http.StatusRequestEntityTooLarge // not even read
	}
	n := int64(maxPayload)
	if r.ContentLength >= 0 {
		n = max(r.ContentLength, 1)
	}
	ctx, cancel := context.WithTimeout(r.Context(), readSlotWait)
	err := s.reading.Acquire(ctx, n)
	cancel()
	if err != nil {
		return nil, http.StatusServiceUnavailable
	}
	defer s.reading.Release(n)
	body := http.MaxBytesReader(w, r.Body, maxPayload)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength)) // one allocation of the announced size
	}
	if _, err := buf.ReadFrom(body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge
		}
		return nil, http.StatusBadRequest
	}
	return buf.Bytes(), 0
}

// readSlotWait is how long a delivery waits for room in the readBudget
// before it is answered 503 (GitHub waits 10 s in all).
const readSlotWait = 3 * time.Second

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	log := s.log.With("delivery", delivery, "event", event)
	body, status := s.readBody(w, r)
	switch status {
	case 0:
	case http.StatusRequestEntityTooLarge:
		http.Error(w, fmt.Sprintf("payload larger than %d bytes", maxPayload), status)
		return
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "10")
		http.Error(w, "busy, redeliver later", status)
		return
	default:
		http.Error(w, "unreadable body", status)
		return
	}
	// Nothing is parsed, remembered or logged from the body before this.
	if !verify(s.o.Secret, body, r.Header.Get("X-Hub-Signature-256")) {
		log.Warn("refused a delivery with a missing or wrong signature", "remote", r.RemoteAddr)
		http.Error(w, "missing or invalid X-Hub-Signature-256", http.StatusUnauthorized)
		return
	}
	if delivery == "" || event == "" {
		http.Error(w, "missing X-GitHub-Delivery or X-GitHub-Event", http.StatusBadRequest)
		return
	}
	if event == "ping" {
		log.Info("ping")
		fmt.Fprintln(w, "pong")
		return
	}
	act, reason := s.h.Triage(event, body)
	if !act {
		log.Debug("ignored", "reason", reason)
		fmt.Fprintln(w, "ignored:", reason)
		return
	}
	if !s.seen.add(delivery) {
		log.Info("duplicate delivery ignored")
		fmt.Fprintln(w, "duplicate delivery")
		return
	}
	if !s.queue.push(job{delivery: delivery, event: event, payload: body}) {
		// Forget it so that GitHub's redelivery is processed.
		s.seen.remove(delivery)
		log.Warn("queue full; asking GitHub to redeliver")
		w.Header().Set("Retry-After", "10")
		http.Error(w, "busy, redeliver later", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintln(w, "accepted")
}

func (s *Server) work(ctx context.Context, j job) {
	log := s.log.With("delivery", j.delivery, "event", j.event)
	start := time.Now()
	out, err := s.h.handle(ctx, j.event, j.delivery, j.payload, log)
	switch {
	case err != nil:
		log.Error("failed to handle the event", "err", err, "took", time.Since(start))
	case out.Ignored != "":
		log.Info("nothing to do", "reason", out.Ignored)
	default:
		log.Info("handled", "run", out.RunID, "took", time.Since(start))
	}
}

// Drain stops taking work and waits for the queued work to finish, or for
// ctx to end (then in-flight work is cancelled).
func (s *Server) Drain(ctx context.Context) error { return s.queue.drain(ctx) }

// Serve serves on ln until ctx ends, then shuts the HTTP server down (no
// new deliveries; GitHub redelivers what it could not send) and drains the
// queue, each within shutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		_ = s.Drain(context.Background())
		return fmt.Errorf("failed to serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: no new deliveries, draining the queue", "queued", s.queue.len())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errShut := srv.Shutdown(sctx)
	dctx, cancel2 := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel2()
	errDrain := s.Drain(dctx)
	if err := errors.Join(errShut, errDrain); err != nil {
		return fmt.Errorf("failed to shut down cleanly: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// deliveries remembers the latest n delivery ids (a ring plus a set), so
// memory stays bounded however long the bot runs. It is only the fast path:
// the status comment's marker in GitHub is what prevents a second dispatch.
type deliveries struct {
	mu   sync.Mutex
	set  map[string]int // id -> its ring slot
	ring []string
	next int
}

func newDeliveries(n int) *deliveries {
	return &deliveries{set: make(map[string]int, n), ring: make([]string, n)}
}

// add records id and reports whether it was new.
func (d *deliveries) add(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.set[id]; ok {
		return false
	}
	if old := d.ring[d.next]; old != "" && d.set[old] == d.next {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.set[id] = d.next
	d.next = (d.next + 1) % len(d.ring)
	return true
}

func (d *deliveries) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.set, id) // its ring slot stays until reused; add checks the slot
}

// queue is a bounded work queue with a fixed set of workers that drains on
// shutdown.
type queue struct {
	mu     sync.RWMutex
	closed bool
	jobs   chan job
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

func newQueue(workers, size int, fn func(context.Context, job)) *queue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &queue{jobs: make(chan job, size), cancel: cancel}
	q.wg.Add(workers)
	for range workers {
		go func() {
			defer q.wg.Done()
			for j := range q.jobs {
				fn(ctx, j)
			}
		}()
	}
	return q
}

// push enqueues without blocking; false when full or closed.
func (q *queue) push(j job) bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return false
	}
	select {
	case q.jobs <- j:
		return true
	default:
		return false
	}
}

func (q *queue) len() int { return len(q.jobs) }

func (q *queue) drain(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.jobs)
	}
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		q.cancel()
		return nil
	case <-ctx.Done():
		q.cancel() // in-flight API calls end now
		<-done
		return fmt.Errorf("failed to drain the queue: %w", ctx.Err())
	}
}
