// Command otelcol is the smallest OpenTelemetry Collector distribution that
// proves the service's export: the OTLP receiver and contrib's file exporter
// (OTLP JSON, one request per line), plus the debug exporter for looking at
// a run by hand. It is a module of its own so that the service's go.mod
// gains none of the collector's dependencies; .ci/otelcol builds it once
// into ~/.cache/users-ci/otelcol-<version>/ and e2e/otelcol_test.go runs it.
package main

import (
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

// version is the collector release this distribution is built from; keep it
// equal to the versions in go.mod and to OTELCOL_VERSION in .ci/otelcol.
const version = "0.161.0"

func components() (otelcol.Factories, error) {
	var err error
	// v0.161.0 refuses to start without a factory for its own telemetry
	// ("otelcol.Factories.Telemetry must not be nil"); the test config turns
	// its metrics off (service::telemetry::metrics::level: none).
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory(), debugexporter.NewFactory()); err != nil {
		return f, err
	}
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol",
			Description: "The users service's test collector: OTLP in, OTLP JSON files out.",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
