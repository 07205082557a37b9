package config

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/golden"
)

const actionYMLPath = "../../action.yml"

type actionYML struct {
	Name   string `yaml:"name"`
	Inputs map[string]struct {
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Default     *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
	} `yaml:"outputs"`
	Runs struct {
		Using string `yaml:"using"`
		Image string `yaml:"image"`
	} `yaml:"runs"`
}

// TestActionYMLMatchesDefinitions keeps action.yml and the Go definitions of
// the inputs and outputs the same: names, defaults, descriptions.
// `go test ./internal/config -run ActionYML -update` rewrites action.yml.
func TestActionYMLMatchesDefinitions(t *testing.T) {
	if golden.Updating() {
		if err := os.WriteFile(actionYMLPath, renderActionYML(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(actionYMLPath)
	if err != nil {
		t.Fatal(err)
	}
	var a actionYML
	if err := yaml.Unmarshal(raw, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if a.Runs.Using != "docker" || a.Runs.Image == "" {
		t.Errorf("runs: using %q image %q, want docker with an image", a.Runs.Using, a.Runs.Image)
	}
	type in struct{ Description, Default string }
	want, got := map[string]in{}, map[string]in{}
	for _, d := range Definitions() {
		want[d.Name] = in{d.Description, d.Default}
	}
	for name, i := range a.Inputs {
		def := ""
		if i.Default != nil {
			def = *i.Default
		}
		if i.Required {
			t.Errorf("input %q is required in action.yml; required-ness depends on the command and is checked in Go", name)
		}
		got[name] = in{i.Description, def}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("action.yml inputs differ from config.Definitions (-go +action.yml); run with -update:\n%s", d)
	}
	wantOut, gotOut := map[string]string{}, map[string]string{}
	for _, o := range Outputs() {
		wantOut[o.Name] = o.Description
	}
	for name, o := range a.Outputs {
		gotOut[name] = o.Description
	}
	if d := cmp.Diff(wantOut, gotOut); d != "" {
		t.Errorf("action.yml outputs differ (-go +action.yml); run with -update:\n%s", d)
	}
}

func renderActionYML() []byte {
	var b strings.Builder
	b.WriteString(`# Generated from internal/config (Inputs, Outputs): edit those, then
#   go test ./internal/config -run ActionYML -update
name: nixos-cloud-deploy
description: Turn a fresh Azure VM into NixOS from your own flake, with nixos-anywhere; no image to build.
author: nixos-cloud-deploy
branding:
  icon: cloud
  color: blue
inputs:
`)
	q := func(s string) string { out, _ := yaml.Marshal(s); return strings.TrimSpace(string(out)) }
	for _, d := range Definitions() {
		fmt.Fprintf(&b, "  %s:\n    description: %s\n    required: false\n", d.Name, q(d.Description))
		if d.Default != "" {
			fmt.Fprintf(&b, "    default: %s\n", q(d.Default))
		}
	}
	b.WriteString("outputs:\n")
	for _, o := range Outputs() {
		fmt.Fprintf(&b, "  %s:\n    description: %s\n", o.Name, q(o.Description))
	}
	b.WriteString(`runs:
  using: docker
  # A release replaces this with the published image pinned by digest
  # (docker://ghcr.io/...@sha256:...), so users pull instead of building.
  image: Dockerfile
`)
	return []byte(b.String())
}
