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

// maxSerialLog bounds how much of the serial log is downloaded.
const maxSerialLog = 8 << 20

// SerialLog returns the last tailLines lines of the VM's serial console log (all of it when
// tailLines <= 0). It asks ARM for a short-lived SAS URL (RetrieveBootDiagnosticsData) and
// downloads the blob with a plain GET: the SAS token is the credential, and a bearer token must
// not be sent to the storage host.
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sas, nil)
	if err != nil {
		return "", fmt.Errorf("failed to build serial log request: %w", err)
	}
	resp, err := p.httpClient.Do(req)
	if err != nil {
		// The URL carries a SAS token: never print it.
		return "", fmt.Errorf("failed to download serial log of virtual machine %q: %w", vm, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("failed to download serial log of virtual machine %q: HTTP %d", vm, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSerialLog))
	if err != nil {
		return "", fmt.Errorf("failed to read serial log of virtual machine %q: %w", vm, redactURLError(err))
	}
	return tail(string(body), tailLines), nil
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
