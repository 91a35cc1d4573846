package router

// gsoModes is the table over Config.DisableGSO that the fan-out, DSCP,
// source-address and byte-exact tests run.
var gsoModes = []struct {
	name    string
	disable bool
}{{"gso", false}, {"nogso", true}}
