// Package chart holds the test of the contract between the Helm chart in
// chart/ and the users binary: the chart is rendered with the Helm SDK and
// what it deploys is checked against the code (configuration variables,
// routes, subcommands), so neither side can drift from the other. The Go
// files live outside chart/ so `helm package` never ships them.
package chart
