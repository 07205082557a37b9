package azuretest_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/azure/azuretest"
)

// The end-to-end wiring: the built action binary reaches the emulator only as an Azure Stack Hub.
func Example() {
	e := azuretest.New(azuretest.Options{
		Latency:        azuretest.Latency{PublicIP: 300 * time.Millisecond, VM: 1500 * time.Millisecond},
		PollRetryAfter: 50 * time.Millisecond, // a built binary polls no faster than 1 s otherwise
		OnVMCreated: func(vm azuretest.VMRecord) {
			// Boot a real sshd for vm.PublicIPs[0] from the cloud-init in vm.CustomData.
		},
	})
	defer e.Close()
	dir, _ := os.MkdirTemp("", "azuretest")
	defer os.RemoveAll(dir)
	ca := filepath.Join(dir, "ca.pem")
	if err := e.WriteCACert(ca); err != nil {
		panic(err)
	}
	e.InjectFault(azuretest.Throttle(1, time.Second, azuretest.Match{Method: http.MethodPut}))

	o := e.Options()
	cmd := exec.Command("./action")
	cmd.Env = append(os.Environ(),
		"SSL_CERT_FILE="+ca,
		"INPUT_AZURE-ENVIRONMENT=AzureStack",
		"INPUT_ARM-ENDPOINT="+e.URL(),
		"INPUT_AZURE-TENANT-ID="+o.TenantID,
		"INPUT_AZURE-CLIENT-ID="+o.ClientID,
		"INPUT_AZURE-CLIENT-SECRET="+o.ClientSecret,
		"INPUT_AZURE-SUBSCRIPTION-ID="+o.SubscriptionID,
	)
	_ = cmd // cmd.Run() in the real test
	fmt.Println(len(e.CACertPEM()) > 0)
	// Output: true
}
