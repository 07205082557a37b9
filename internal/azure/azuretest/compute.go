package azuretest

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// VMRecord describes a virtual machine as the emulator stores it.
type VMRecord struct {
	ID, Name, ResourceGroup, Location string
	// Request is the body of the last PUT of the VM, as sent (custom data included).
	Request json.RawMessage
	// CustomData is osProfile.customData, base64-decoded (cloud-init user data).
	CustomData    []byte
	AdminUsername string
	Tags          map[string]string
	// PublicIPs, FQDNs and PrivateIPs come from the VM's NICs and their public IP addresses.
	PublicIPs, FQDNs, PrivateIPs []string
	// ProvisioningState is Creating, Updating, Succeeded, Failed or Deleting.
	ProvisioningState string
}

// RunCommand is a run command request for a VM (POST .../virtualMachines/{vm}/runCommand).
type RunCommand struct {
	VM         VMRecord
	CommandID  string // e.g. "RunShellScript"
	Script     []string
	Parameters map[string]string
}

// RunCommandResult is what the RunCommand hook answers: what the script wrote and how it exited.
// The emulator reports it the way the RunCommandLinux extension does (see runCommandOutput): the
// exit status is not in the report.
type RunCommandResult struct {
	Stdout, Stderr string
	ExitCode       int
}

func (e *Emulator) putVM(w http.ResponseWriter, c *call) *apiError {
	loc := c.str("location")
	if loc == "" {
		return newAPIError(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	lat := e.latency.VM
	old := e.resources[key]
	id := c.t.id()
	if old != nil {
		id = old.id
	}
	customData := c.str("properties", "osProfile", "customData")
	if old != nil && customData != "" && customData != old.customData {
		e.mu.Unlock()
		return newAPIError(http.StatusConflict, "PropertyChangeNotAllowed", "Changing property 'customData' is not allowed.")
	}
	if old != nil && old.state() == "Deleting" {
		e.mu.Unlock()
		return newAPIError(http.StatusConflict, "OperationNotAllowed", "The operation is not allowed because the VM is being deleted.")
	}
	if aerr := checkLinuxSSH(c); aerr != nil {
		e.mu.Unlock()
		return aerr
	}
	if old == nil || !strings.EqualFold(str(old.doc, "properties", "hardwareProfile", "vmSize"), c.str("properties", "hardwareProfile", "vmSize")) {
		if aerr := e.checkSizeLocked(c.str("properties", "hardwareProfile", "vmSize"), loc, id); aerr != nil {
			e.mu.Unlock()
			return aerr
		}
	}
	doc := baseDoc(c, id)
	props := doc["properties"].(map[string]any)
	for _, x := range slice(props, "networkProfile", "networkInterfaces") {
		nic, _ := x.(map[string]any)
		nid := str(nic, "id")
		nr, ok := e.resources[strings.ToLower(nid)]
		if !ok {
			e.mu.Unlock()
			return newAPIError(http.StatusNotFound, "NotFound", fmt.Sprintf("Resource %s not found.", nid))
		}
		if nr.state() != "Succeeded" {
			e.mu.Unlock()
			return newAPIError(http.StatusConflict, "RetryableError",
				fmt.Sprintf("A retryable error occurred: network interface %s is in %s state.", nid, nr.state()))
		}
		if vm := str(nr.doc, "properties", "virtualMachine", "id"); vm != "" && !strings.EqualFold(vm, id) {
			e.mu.Unlock()
			return newAPIError(http.StatusBadRequest, "NicInUse",
				fmt.Sprintf("Network Interface %s is used by existing resource %s. In order to use it, it must be dissociated from that resource.", nid, vm))
		}
	}
	vmID := e.newID()
	if old != nil {
		vmID = str(old.doc, "properties", "vmId")
		if customData == "" {
			customData = old.customData
		}
	}
	props["vmId"] = vmID
	if _, ok := props["timeCreated"]; !ok {
		props["timeCreated"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	if os := mapAt(props, "osProfile"); os != nil {
		delete(os, "customData")
		delete(os, "adminPassword")
	}
	if osDisk := mapAt(props, "storageProfile", "osDisk"); osDisk != nil {
		if str(osDisk, "name") == "" {
			osDisk["name"] = fmt.Sprintf("%s_OsDisk_1_%s", c.t.name(), strings.ReplaceAll(vmID, "-", ""))
		}
		ensure(osDisk, "managedDisk")["id"] = groupID(c.t.sub, c.t.rg) + "/providers/Microsoft.Compute/disks/" + str(osDisk, "name")
	}
	r := &resource{id: id, typ: "Microsoft.Compute/virtualMachines", group: strings.ToLower(groupID(c.t.sub, c.t.rg)),
		doc: doc, request: bytes.Clone(c.body), customData: customData, power: "PowerState/starting"}
	isNew := old == nil || !old.created
	if old != nil {
		r.created, r.power = old.created, old.power
		r.setState("Updating")
	} else {
		r.setState("Creating")
	}
	for _, x := range slice(props, "networkProfile", "networkInterfaces") {
		nr := e.resources[strings.ToLower(str(x.(map[string]any), "id"))]
		ensure(nr.doc, "properties")["virtualMachine"] = map[string]any{"id": id}
	}
	e.resources[key] = r
	snapshot := deepCopy(doc)
	e.mu.Unlock()

	op := e.startOperation(c, loc, lat, func(_ context.Context, fail *armError) (*armError, any) {
		if fail != nil {
			e.mu.Lock()
			r.setState("Failed")
			r.failure = fail
			r.power = ""
			e.mu.Unlock()
			return fail, nil
		}
		e.mu.Lock()
		e.finishVMLocked(r)
		rec := e.vmRecordLocked(r)
		hook := e.opts.OnVMCreated
		e.mu.Unlock()
		if isNew && hook != nil {
			hook(rec)
		}
		e.mu.Lock()
		r.setState("Succeeded")
		r.created, r.failure, r.power = true, nil, "PowerState/running"
		e.mu.Unlock()
		return nil, nil
	})
	status := http.StatusCreated
	if old != nil {
		status = http.StatusOK
	}
	e.writeAccepted(w, op, status, true, false, snapshot)
	return nil
}

// finishVMLocked creates the OS disk and gives the NICs their MAC address.
func (e *Emulator) finishVMLocked(r *resource) {
	osDisk := mapAt(r.doc, "properties", "storageProfile", "osDisk")
	if diskID := str(osDisk, "managedDisk", "id"); diskID != "" {
		if _, ok := e.resources[strings.ToLower(diskID)]; !ok {
			size, _ := osDisk["diskSizeGB"].(float64)
			if size == 0 {
				size = 30
			}
			sku := str(osDisk, "managedDisk", "storageAccountType")
			if sku == "" {
				sku = "Premium_LRS"
			}
			e.resources[strings.ToLower(diskID)] = &resource{id: diskID, typ: "Microsoft.Compute/disks", group: r.group, doc: map[string]any{
				"id": diskID, "name": lastSegment(diskID), "type": "Microsoft.Compute/disks", "location": r.doc["location"],
				"managedBy": r.id, "sku": map[string]any{"name": sku},
				"properties": map[string]any{"provisioningState": "Succeeded", "diskSizeGB": size, "diskState": "Attached", "osType": "Linux"},
			}}
		}
	}
	for i, x := range slice(r.doc, "properties", "networkProfile", "networkInterfaces") {
		if nr, ok := e.resources[strings.ToLower(str(x.(map[string]any), "id"))]; ok && str(nr.doc, "properties", "macAddress") == "" {
			var b [3]byte
			randRead(b[:])
			nr.doc["properties"].(map[string]any)["macAddress"] = fmt.Sprintf("00-0D-3A-%02X-%02X-%02X", b[0], b[1], b[2]+byte(i))
		}
	}
}

func (e *Emulator) vmRecordLocked(r *resource) VMRecord {
	rec := VMRecord{
		ID:                r.id,
		Name:              str(r.doc, "name"),
		ResourceGroup:     parseTarget(r.id).rg,
		Location:          str(r.doc, "location"),
		Request:           bytes.Clone(r.request),
		AdminUsername:     str(r.doc, "properties", "osProfile", "adminUsername"),
		ProvisioningState: r.state(),
	}
	if r.customData != "" {
		rec.CustomData, _ = base64.StdEncoding.DecodeString(r.customData)
	}
	if tags, ok := r.doc["tags"].(map[string]any); ok {
		rec.Tags = map[string]string{}
		for k, v := range tags {
			rec.Tags[k], _ = v.(string)
		}
	}
	for _, x := range slice(r.doc, "properties", "networkProfile", "networkInterfaces") {
		nr, ok := e.resources[strings.ToLower(str(x.(map[string]any), "id"))]
		if !ok {
			continue
		}
		for _, y := range slice(nr.doc, "properties", "ipConfigurations") {
			ipc := y.(map[string]any)
			if ip := str(ipc, "properties", "privateIPAddress"); ip != "" {
				rec.PrivateIPs = append(rec.PrivateIPs, ip)
			}
			if pr, ok := e.resources[strings.ToLower(str(ipc, "properties", "publicIPAddress", "id"))]; ok {
				if ip := str(pr.doc, "properties", "ipAddress"); ip != "" {
					rec.PublicIPs = append(rec.PublicIPs, ip)
				}
				if f := str(pr.doc, "properties", "dnsSettings", "fqdn"); f != "" {
					rec.FQDNs = append(rec.FQDNs, f)
				}
			}
		}
	}
	return rec
}

// VMs returns every stored VM, sorted by ID.
func (e *Emulator) VMs() []VMRecord {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []VMRecord
	for _, r := range e.sortedLocked() {
		if r.typ == "Microsoft.Compute/virtualMachines" {
			out = append(out, e.vmRecordLocked(r))
		}
	}
	return out
}

// SetSerialLog sets the serial console log boot diagnostics serve for the VM with that name (any group).
func (e *Emulator) SetSerialLog(vmName, log string) {
	e.mu.Lock()
	e.serialLogs[strings.ToLower(vmName)] = log
	e.mu.Unlock()
}

func (e *Emulator) instanceViewLocked(r *resource) map[string]any {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	state := strings.ToLower(r.state())
	prov := map[string]any{"code": "ProvisioningState/" + state, "level": "Info", "displayStatus": "Provisioning " + state, "time": now}
	if r.failure != nil {
		prov = map[string]any{"code": "ProvisioningState/failed/" + r.failure.Code, "level": "Error",
			"displayStatus": "Provisioning failed", "message": r.failure.Message, "time": now}
	}
	statuses := []any{prov}
	if r.power != "" {
		statuses = append(statuses, map[string]any{"code": r.power, "level": "Info",
			"displayStatus": "VM " + strings.TrimPrefix(r.power, "PowerState/")})
	}
	iv := map[string]any{
		"computerName": str(r.doc, "properties", "osProfile", "computerName"),
		"osName":       "ubuntu",
		"osVersion":    "24.04",
		"statuses":     statuses,
	}
	if r.created {
		iv["vmAgent"] = map[string]any{"vmAgentVersion": "2.9.1.1", "statuses": []any{map[string]any{
			"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready", "message": "Guest Agent is running", "time": now,
		}}}
	}
	if bootDiagnosticsEnabled(r) {
		iv["bootDiagnostics"] = map[string]any{}
	}
	return iv
}

func bootDiagnosticsEnabled(r *resource) bool {
	v, _ := mapAt(r.doc, "properties", "diagnosticsProfile", "bootDiagnostics")["enabled"].(bool)
	return v
}

func (e *Emulator) serveVMAction(w http.ResponseWriter, c *call) *apiError {
	key := strings.ToLower(c.t.id())
	e.mu.Lock()
	r, ok := e.resources[key]
	if !ok {
		e.mu.Unlock()
		return notFound(c)
	}
	action := strings.ToLower(c.t.action)
	switch {
	case action == "instanceview" && c.r.Method == http.MethodGet:
		iv := e.instanceViewLocked(r)
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, iv)
		return nil
	case c.r.Method != http.MethodPost:
		e.mu.Unlock()
		return methodNotAllowed(c)
	case action == "retrievebootdiagnosticsdata":
		defer e.mu.Unlock()
		return e.retrieveBootDiagnosticsLocked(w, c, r)
	case action == "runcommand":
		rec := e.vmRecordLocked(r)
		lat := e.latency.RunCommand
		hook := e.opts.RunCommand
		if rec.ProvisioningState != "Succeeded" {
			e.mu.Unlock()
			return newAPIError(http.StatusConflict, "OperationNotAllowed",
				fmt.Sprintf("Operation 'RunCommand' is not allowed since the VM is in provisioning state '%s'.", rec.ProvisioningState))
		}
		// One Run Command at a time per VM: the agent runs one extension sequence number at a
		// time, and ARM answers 409 Conflict to the next (the message users see, e.g.
		// Azure/azure-cli#32305, MicrosoftDocs/azure-docs#43356).
		if r.runningCommand {
			e.mu.Unlock()
			return newAPIError(http.StatusConflict, "Conflict",
				"Run command extension execution is in progress. Please wait for completion before invoking a run command.")
		}
		r.runningCommand = true
		e.mu.Unlock()
		cmd := RunCommand{VM: rec, CommandID: c.str("commandId"), Parameters: map[string]string{}}
		for _, s := range slice(c.doc, "script") {
			if line, ok := s.(string); ok {
				cmd.Script = append(cmd.Script, line)
			}
		}
		for _, p := range slice(c.doc, "parameters") {
			if m, ok := p.(map[string]any); ok {
				cmd.Parameters[str(m, "name")] = str(m, "value")
			}
		}
		op := e.startOperation(c, rec.Location, lat, func(ctx context.Context, fail *armError) (*armError, any) {
			defer func() {
				e.mu.Lock()
				r.runningCommand = false
				e.mu.Unlock()
			}()
			if fail != nil {
				return fail, nil
			}
			var res RunCommandResult
			if hook != nil {
				res = hook(ctx, cmd)
			}
			return nil, runCommandOutput(res)
		})
		e.writeAccepted(w, op, http.StatusAccepted, true, true, nil)
		return nil
	case action == "poweroff" || action == "deallocate" || action == "start" || action == "restart":
		lat := e.latency.Delete
		loc := str(r.doc, "location")
		e.mu.Unlock()
		final := map[string]string{"poweroff": "PowerState/stopped", "deallocate": "PowerState/deallocated",
			"start": "PowerState/running", "restart": "PowerState/running"}[action]
		op := e.startOperation(c, loc, lat, func(_ context.Context, fail *armError) (*armError, any) {
			if fail != nil {
				return fail, nil
			}
			e.mu.Lock()
			r.power = final
			e.mu.Unlock()
			return nil, nil
		})
		e.writeAccepted(w, op, http.StatusAccepted, true, true, nil)
		return nil
	}
	e.mu.Unlock()
	return newAPIError(http.StatusNotFound, "NotFound", fmt.Sprintf("The action '%s' on virtual machines is not supported by the emulator.", c.t.action))
}

// runCommandOutput is the instance view the RunCommandLinux extension reports for a finished
// script (Azure/run-command-extension-linux main/cmds.go enable, main/status.go statusMsg):
// "Enable succeeded" whatever the script's exit status ("Always report nil for error because
// extension should not fail if script throws error"), then the last 4096 bytes (maxTailLen,
// main/logtail.go tailFile) of stdout and of stderr.
func runCommandOutput(res RunCommandResult) map[string]any {
	msg := fmt.Sprintf("Enable succeeded: \n[stdout]\n%s\n[stderr]\n%s", tailBytes(res.Stdout, runCommandTailLen), tailBytes(res.Stderr, runCommandTailLen))
	return map[string]any{"value": []any{map[string]any{
		"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": msg,
	}}}
}

// runCommandTailLen is RunCommandLinux's maxTailLen.
const runCommandTailLen = 4096

func tailBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

const sasLifetime = 2 * time.Hour

func (e *Emulator) retrieveBootDiagnosticsLocked(w http.ResponseWriter, c *call, r *resource) *apiError {
	if !bootDiagnosticsEnabled(r) {
		return newAPIError(http.StatusConflict, "OperationNotAllowed",
			fmt.Sprintf("Boot diagnostics is not enabled for virtual machine '%s'.", str(r.doc, "name")))
	}
	var b [16]byte
	randRead(b[:])
	sig := hex.EncodeToString(b[:])
	e.sas[sig] = strings.ToLower(r.id)
	lifetime := sasLifetime
	if m, err := strconv.Atoi(c.r.URL.Query().Get("sasUriExpirationTimeInMinutes")); err == nil && m > 0 {
		lifetime = time.Duration(m) * time.Minute
	}
	expiry := time.Now().UTC().Add(lifetime).Format("2006-01-02T15:04:05Z")
	vmID := str(r.doc, "properties", "vmId")
	blob := func(suffix string) string {
		return fmt.Sprintf("%s/bootdiagnostics/%s/%s.%s.%s?sv=2022-11-02&sr=b&sp=r&se=%s&sig=%s",
			e.URL(), vmID, str(r.doc, "name"), vmID, suffix, expiry, sig)
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"consoleScreenshotBlobUri": blob("screenshot.bmp"),
		"serialConsoleLogBlobUri":  blob("serialconsole.log"),
	})
	return nil
}

func writeStorageError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, "\ufeff<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s\nTime:%s</Message></Error>",
		code, msg, time.Now().UTC().Format(time.RFC3339Nano))
}

// serveBootDiagnosticsBlob serves the SAS URLs retrieveBootDiagnosticsData handed out. Like Azure Storage
// behind a SAS, it needs no bearer token; a request that sends one anyway is refused.
func (e *Emulator) serveBootDiagnosticsBlob(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeStorageError(w, http.StatusMethodNotAllowed, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
		return
	}
	if r.Header.Get("Authorization") != "" {
		writeStorageError(w, http.StatusBadRequest, "InvalidAuthenticationInfo",
			"Authentication information is not given in the correct format. The request carries both an Authorization header and a SAS token.")
		return
	}
	q := r.URL.Query()
	e.mu.Lock()
	vmKey, ok := e.sas[q.Get("sig")]
	var res *resource
	if ok {
		res = e.resources[vmKey]
	}
	var body []byte
	if res != nil {
		if strings.HasSuffix(r.URL.Path, ".bmp") {
			body = []byte("BM")
		} else if l, ok := e.serialLogs[strings.ToLower(str(res.doc, "name"))]; ok {
			body = []byte(l)
		} else if e.opts.SerialLog != nil {
			rec := e.vmRecordLocked(res)
			e.mu.Unlock()
			body = []byte(e.opts.SerialLog(rec))
			e.mu.Lock()
		} else {
			body = []byte(DefaultSerialLog)
		}
	}
	e.mu.Unlock()
	exp, err := time.Parse("2006-01-02T15:04:05Z", q.Get("se"))
	switch {
	case !ok || err != nil:
		writeStorageError(w, http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
	case time.Now().After(exp):
		writeStorageError(w, http.StatusForbidden, "AuthenticationFailed", "Signed expiry time has passed.")
	case res == nil:
		writeStorageError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("x-ms-blob-type", "AppendBlob")
		w.Header().Set("Accept-Ranges", "bytes")
		status := http.StatusOK
		if r.Method == http.MethodGet {
			start, end, ok := blobRange(r, len(body))
			switch {
			case ok && start >= len(body):
				writeStorageError(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource.")
				return
			case ok:
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(body)))
				body, status = body[start:end+1], http.StatusPartialContent
			}
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	}
}

// blobRange reads the Range (or x-ms-range, which wins) of a Get Blob. The Blob service takes
// "bytes=start-" and "bytes=start-end" only, not the suffix form "bytes=-n" (Microsoft Learn,
// "Specifying the range header for Blob service operations"); anything else is ignored and the
// whole blob is served.
func blobRange(r *http.Request, size int) (start, end int, ok bool) {
	h := r.Header.Get("x-ms-range")
	if h == "" {
		h = r.Header.Get("Range")
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return 0, 0, false
	}
	a, b, _ := strings.Cut(spec, "-")
	start, err := strconv.Atoi(a)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.Atoi(b); err != nil || end < start {
			return 0, 0, false
		}
		end = min(end, size-1)
	}
	return start, end, true
}

// checkLinuxSSH applies the compute RP's rules for a Linux VM's SSH settings (Microsoft Learn,
// "Detailed steps: create and manage SSH keys": only SSH-2 RSA keys of at least 2048 bits and
// ED25519 keys; anything else, ECDSA and FIDO sk-* keys included, is 400 InvalidParameter with
// target linuxConfiguration.ssh.publicKeys.keyData, as users report it), and refuses a profile
// with password login off and no key.
func checkLinuxSSH(c *call) *apiError {
	lc := mapAt(c.doc, "properties", "osProfile", "linuxConfiguration")
	if lc == nil {
		return nil
	}
	keys := slice(lc, "ssh", "publicKeys")
	if off, _ := lc["disablePasswordAuthentication"].(bool); off && len(keys) == 0 {
		return &apiError{status: http.StatusBadRequest, armError: armError{Code: "InvalidParameter", Target: "linuxConfiguration",
			Message: "Authentication using either SSH or by user name and password must be enabled in Linux profile."}}
	}
	for _, x := range keys {
		k, _ := x.(map[string]any)
		if !azureTakesKey(str(k, "keyData")) {
			return &apiError{status: http.StatusBadRequest, armError: armError{Code: "InvalidParameter", Target: "linuxConfiguration.ssh.publicKeys.keyData",
				Message: "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid."}}
		}
	}
	return nil
}

func azureTakesKey(line string) bool {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return false
	}
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return true
	case ssh.KeyAlgoRSA:
		rk, ok := k.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
		return ok && rk.N.BitLen() >= 2048
	}
	return false
}
