package config

import "strings"

// MinMemoryGB is what nixos-anywhere's kexec installer needs on the target:
// the installer runs from a RAM disk (nixos-anywhere's README says 1.5 GB).
const MinMemoryGB = 1.5

// sizeMemoryGB lists the memory of sizes that are refused or that users often
// pick, so the plan can show it. Sizes not listed are accepted unchecked.
var sizeMemoryGB = map[string]float64{
	"standard_a0": 0.75, "basic_a0": 0.75, "standard_a1": 1.75, "basic_a1": 1.75,
	"standard_b1ls": 0.5, "standard_b1s": 1, "standard_b1ms": 2, "standard_b2s": 4, "standard_b2ms": 8,
	"standard_b4ms": 16, "standard_b8ms": 32,
	"standard_b2ats_v2": 1, "standard_b2ts_v2": 1, "standard_b2pts_v2": 1,
	"standard_b2als_v2": 4, "standard_b2as_v2": 8, "standard_b2ls_v2": 4, "standard_b2s_v2": 8,
	"standard_f1": 2, "standard_f1s": 2, "standard_f2s_v2": 4,
	"standard_a1_v2": 2, "standard_a2_v2": 4,
	"standard_d2s_v5": 8, "standard_d2as_v5": 8, "standard_d2s_v6": 8, "standard_d2ads_v6": 8,
	"standard_d4s_v5": 16, "standard_d4s_v6": 16, "standard_e2s_v5": 16,
}

// SizeMemoryGB returns the memory of a known size.
func SizeMemoryGB(size string) (float64, bool) {
	gb, ok := sizeMemoryGB[strings.ToLower(size)]
	return gb, ok
}
