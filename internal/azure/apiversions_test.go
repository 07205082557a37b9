package azure

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAPIVersionsAreTheSDKs: the table the AzureStack check compares with is what the SDK
// modules really send, so a dependency bump that changes a version fails here.
func TestAPIVersionsAreTheSDKs(t *testing.T) {
	t.Parallel()
	f := newFakeARM()
	var mu sync.Mutex
	sent := map[string]string{}
	f.intercept = func(req *http.Request, _ []byte) *http.Response {
		if req.Method != http.MethodPut {
			return nil
		}
		segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		typ := "Microsoft.Resources/resourceGroups"
		if len(segs) >= 8 {
			typ = segs[5] + "/" + segs[6]
		}
		mu.Lock()
		sent[typ] = req.URL.Query().Get("api-version")
		mu.Unlock()
		return nil
	}
	if _, err := f.provisioner(t).Provision(context.Background(), testSpec(), nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, av := range apiVersions {
		want[av.resourceType] = av.version
	}
	if d := cmp.Diff(want, sent); d != "" {
		t.Errorf("api-versions (-table +sent):\n%s", d)
	}
}
