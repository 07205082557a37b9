package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// serialTailBytes is how much of the end of the serial log is read for a tail: the log is an
// append blob that grows through every boot, and the failure is at its end.
const serialTailBytes = 256 << 10

// SerialLog returns the last tailLines lines of the VM's serial console log (all of it when
// tailLines <= 0, up to its last 8 MiB). It asks ARM for a short-lived SAS URL
// (RetrieveBootDiagnosticsData) and reads the blob with plain requests: the SAS token is the
// credential, and a bearer token must not be sent to the storage host. For a tail it reads the
// blob's size (HEAD) and then only its end: the Blob service takes "Range: bytes=start-" but not
// the suffix form "bytes=-n" (Microsoft Learn, "Specifying the range header for Blob service
// operations").
func (p *Provisioner) SerialLog(ctx context.Context, rg, vm string, tailLines int) (string, error) {
	ec := p.ec(fmt.Sprintf("retrieve boot diagnostics of virtual machine %q", vm), nil)
	got, err := p.vms.RetrieveBootDiagnosticsData(ctx, rg, vm, &armcompute.VirtualMachinesClientRetrieveBootDiagnosticsDataOptions{
		SasURIExpirationTimeInMinutes: to[int32](10),
	})
	if err != nil {
		return "", explain(err, ec)
	}
	sas := deref(got.SerialConsoleLogBlobURI)
	if sas == "" {
		return "", fmt.Errorf("virtual machine %q has no serial console log yet (boot diagnostics on, but nothing written)", vm)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	want := int64(maxSerialLog)
	if tailLines > 0 {
		want = serialTailBytes
	}
	var start int64
	if size, err := p.blobSize(ctx, sas); err == nil && size > want {
		start = size - want
	}
	body, err := p.readBlob(ctx, sas, start, vm)
	if err != nil {
		return "", err
	}
	if start > 0 {
		// The first line was cut in the middle.
		if i := strings.IndexByte(body, '\n'); i >= 0 {
			body = body[i+1:]
		}
	}
	return tail(body, tailLines), nil
}

// maxSerialLog bounds a whole download.
const maxSerialLog = 8 << 20

// blobSize reads a blob's length with a HEAD (Get Blob Properties).
func (p *Provisioner) blobSize(ctx context.Context, sas string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, sas, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return 0, redactURLError(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return resp.ContentLength, nil
}

// readBlob GETs the blob from offset start to its end.
func (p *Provisioner) readBlob(ctx context.Context, sas string, start int64, vm string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sas, nil)
	if err != nil {
		return "", fmt.Errorf("failed to build serial log request: %w", err)
	}
	if start > 0 {
		req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-", start))
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		// The URL carries a SAS token: never print it.
		return "", fmt.Errorf("failed to download serial log of virtual machine %q: %w", vm, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return "", fmt.Errorf("failed to download serial log of virtual machine %q: HTTP %d", vm, resp.StatusCode)
	}
	r := io.Reader(resp.Body)
	if resp.StatusCode == http.StatusOK && start > 0 {
		// The range was not honoured: skip to it.
		if _, err := io.CopyN(io.Discard, resp.Body, start); err != nil {
			return "", fmt.Errorf("failed to read serial log of virtual machine %q: %w", vm, redactURLError(err))
		}
	}
	body, err := io.ReadAll(io.LimitReader(r, maxSerialLog))
	if err != nil {
		return "", fmt.Errorf("failed to read serial log of virtual machine %q: %w", vm, redactURLError(err))
	}
	return string(body), nil
}

// redactURLError drops the URL (and its SAS signature) from a *url.Error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s serial log blob: %w", ue.Op, ue.Err)
	}
	return err
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	if n <= 0 {
		return s
	}
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
