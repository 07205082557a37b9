package azuretest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v4"
)

// TestSSLCertFile runs this test binary again as a child whose only trust in the emulator is the CA file
// named by SSL_CERT_FILE, as the action binary's will be in the end-to-end test.
func TestSSLCertFile(t *testing.T) {
	if url := os.Getenv("AZURETEST_CHILD_GET"); url != "" {
		// Child: the default client, system roots only.
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("child GET: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("child GET: status %d", resp.StatusCode)
		}
		return
	}
	t.Parallel()
	e := newEmulator(t, Options{})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := e.WriteCACert(ca); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		certFile string
		wantOK   bool
	}{
		{"trusted through SSL_CERT_FILE", ca, true},
		{"untrusted without it", filepath.Join(t.TempDir(), "empty.pem"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestSSLCertFile$", "-test.count=1")
			cmd.Env = append(os.Environ(),
				"AZURETEST_CHILD_GET="+e.URL()+"/metadata/endpoints?api-version=2022-09-01",
				"SSL_CERT_FILE="+tc.certFile, "SSL_CERT_DIR=/nonexistent")
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.wantOK {
				t.Errorf("child err = %v, want success %v; output:\n%s", err, tc.wantOK, out)
			}
			if !tc.wantOK && !strings.Contains(string(out), "certificate signed by unknown authority") {
				t.Errorf("child failed for another reason:\n%s", out)
			}
		})
	}
}

// TestPollRetryAfter shows that Options.PollRetryAfter drives the SDK's poller: the poll frequency here is
// an hour, so the operation only completes because retry-after-ms tells the poller to come back sooner.
// (Outside `go test` the SDK refuses poll frequencies under one second; this is how a built binary polls fast.)
func TestPollRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{PollRetryAfter: time.Millisecond, Latency: Latency{PublicIP: 5 * time.Millisecond}})
	c := newClients(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.groups.CreateOrUpdate(ctx, testGroup, armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := c.pips.BeginCreateOrUpdate(ctx, testGroup, "ip", pipParams("ip"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Hour}); err != nil {
		t.Fatalf("poll: %v", err)
	}
}

func TestAnyAPIVersionAndSlashes(t *testing.T) {
	t.Parallel()
	e := newEmulator(t, Options{})
	c := newClients(t, e)
	ctx := context.Background()
	if _, err := c.groups.CreateOrUpdate(ctx, testGroup, armresources.ResourceGroup{Location: to.Ptr(testLocation)}, nil); err != nil {
		t.Fatal(err)
	}
	id := "/subscriptions/" + DefaultSubscriptionID + "/resourceGroups/" + testGroup
	for _, v := range []string{"2015-01-01", "2099-12-31-preview"} {
		if _, err := c.generic.GetByID(ctx, id+"/providers/Microsoft.Network/publicIPAddresses/none", v, nil); err == nil || !strings.Contains(err.Error(), "ResourceNotFound") {
			t.Errorf("api-version %s: err = %v, want ResourceNotFound", v, err)
		}
	}
	resp, err := e.HTTPClient().Get(e.URL() + "//metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("metadata with a doubled slash: status %d", resp.StatusCode)
	}
}
