package config

import (
	"fmt"
	"sort"
	"strings"
)

// knownRegions are Azure's public, China and US Government region names.
// A name outside this list is still accepted when it is not a near-miss of
// one of them: new regions appear, and Azure Stack has its own.
var knownRegions = setOf(
	"australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "austriaeast",
	"belgiumcentral", "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia",
	"centralus", "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "francesouth",
	"germanynorth", "germanywestcentral", "indonesiacentral", "israelcentral", "italynorth",
	"japaneast", "japanwest", "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth",
	"malaysiawest", "mexicocentral", "newzealandnorth", "northcentralus", "northeurope",
	"norwayeast", "norwaywest", "polandcentral", "qatarcentral", "southafricanorth",
	"southafricawest", "southcentralus", "southindia", "southeastasia", "spaincentral",
	"swedencentral", "swedensouth", "switzerlandnorth", "switzerlandwest", "uaecentral", "uaenorth",
	"uksouth", "ukwest", "westcentralus", "westeurope", "westindia", "westus", "westus2", "westus3",
	// Azure China
	"chinaeast", "chinaeast2", "chinaeast3", "chinanorth", "chinanorth2", "chinanorth3",
	// Azure US Government
	"usgovarizona", "usgovtexas", "usgovvirginia", "usdodcentral", "usdodeast",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func regionNames() []string {
	names := make([]string, 0, len(knownRegions))
	for n := range knownRegions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// didYouMean returns "; did you mean "x"?" for the closest candidate within a
// small edit distance, or "".
func didYouMean(s string, candidates []string) string {
	if best := Closest(s, candidates); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

// Closest returns the candidate nearest to s by edit distance (case-folded),
// when it is near enough to be a likely typo, or "".
func Closest(s string, candidates []string) string {
	ls := strings.ToLower(s)
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := editDistance(ls, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	if bestD == 0 || bestD > limit {
		if bestD == 0 && best != s {
			return best // differs only in case
		}
		return ""
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment) distance,
// so a swap of two neighbouring letters ("uksouht") costs one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
