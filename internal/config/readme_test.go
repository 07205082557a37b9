package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
)

const readmePath = "../../README.md"

// TestREADMETables keeps the README's input and output tables generated from
// the definitions; -update rewrites them.
func TestREADMETables(t *testing.T) {
	raw, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	got := string(raw)
	want := replaceBetween(got, "inputs", inputsTable())
	want = replaceBetween(want, "outputs", outputsTable())
	if golden.Updating() && want != got {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		got = want
	}
	if got != want {
		t.Error("README.md input/output tables are out of date: run go test ./internal/config -run README -update")
	}
}

func replaceBetween(doc, name, body string) string {
	re := regexp.MustCompile(`(?s)(<!-- ` + name + `:start -->\n).*?(<!-- ` + name + `:end -->)`)
	return re.ReplaceAllLiteralString(doc, "<!-- "+name+":start -->\n"+body+"<!-- "+name+":end -->")
}

func inputsTable() string {
	var b strings.Builder
	b.WriteString("| input | flag | default | description |\n| --- | --- | --- | --- |\n")
	for _, d := range Definitions() {
		flag := "`--" + d.Name + "`"
		if d.Short != "" {
			flag += ", `-" + d.Short + "`"
		}
		def := ""
		if d.Default != "" {
			def = "`" + d.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, flag, def, strings.ReplaceAll(d.Description, "|", "\\|"))
	}
	return b.String()
}

func outputsTable() string {
	var b strings.Builder
	b.WriteString("| output | description |\n| --- | --- |\n")
	for _, o := range Outputs() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", o.Name, o.Description)
	}
	return b.String()
}
