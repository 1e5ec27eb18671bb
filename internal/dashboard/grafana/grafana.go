// Package grafana renders the agent's dashboard for Grafana: one for the
// CloudWatch data source, one for a Prometheus that scrapes the agent's
// local endpoint, from the panels of internal/dashboard (the default,
// standard set) and the metric catalogue, so the three cannot drift.
// They are generated into docs/grafana and shipped in the .deb; a test
// keeps the files equal to this code. Kept out of internal/dashboard so
// that the agent's binary does not link the Grafana SDK.
package grafana

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ec2diag/ec2diag/internal/dashboard"
	"github.com/ec2diag/ec2diag/internal/fleet"
	"github.com/ec2diag/ec2diag/internal/metrics"
	"github.com/grafana/grafana-foundation-sdk/go/cloudwatch"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	gd "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

var (
	cwDS   = common.DataSourceRef{Type: cog.ToPtr("cloudwatch"), Uid: cog.ToPtr("${datasource}")}
	promDS = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
)

// unitOf maps a CloudWatch unit to Grafana's.
func unitOf(name string) string {
	for _, s := range metrics.Catalogue() {
		if s.Name == name {
			switch s.Unit {
			case "Percent":
				return "percent"
			case "Seconds":
				return "s"
			case "Bytes":
				return "bytes"
			}
		}
	}
	return "short"
}

// layout places panels two to a row, 12 wide and 8 high.
func layout(i int, y0 uint32) gd.GridPos {
	return gd.GridPos{X: uint32(i%2) * 12, Y: y0 + uint32(i/2)*8, W: 12, H: 8}
}

// GrafanaCloudWatch is the dashboard for Grafana's CloudWatch data source:
// the standard set per instance ($instance), the fleet's per-job figures,
// EC2's StatusCheckFailed, and the incidents from CloudWatch Logs.
func GrafanaCloudWatch() ([]byte, error) {
	b := gd.NewDashboardBuilder("ec2diag (CloudWatch)").Uid("ec2diag-cloudwatch").Tags([]string{"ec2diag", "ec2"}).
		Editable().Time("now-6h", "now").Refresh("1m").Timezone("browser").
		WithVariable(gd.NewDatasourceVariableBuilder("datasource").Label("CloudWatch").Type("cloudwatch")).
		WithVariable(gd.NewTextBoxVariableBuilder("region").Label("Region").DefaultValue(str("default")).
			Description("AWS region; default is the data source's")).
		WithVariable(gd.NewTextBoxVariableBuilder("namespace").Label("Namespace").DefaultValue(str("EC2Diag")).
			Description("cloudwatch.namespace of the agents")).
		WithVariable(gd.NewQueryVariableBuilder("instance").Label("Instance").Datasource(cwDS).
			Query(gd.StringOrMap{Map: map[string]any{"queryType": "dimensionValues", "namespace": "$namespace", "region": "$region",
				"metricName": "CPUBusy", "dimensionKey": "InstanceId", "refId": "instance"}}).
			Refresh(gd.VariableRefreshOnTimeRangeChanged).Sort(gd.VariableSortAlphabeticalAsc)).
		WithVariable(gd.NewTextBoxVariableBuilder("loggroup").Label("Log group").DefaultValue(str("/ec2diag")).
			Description("cloudwatch_logs.log_group of the agents"))
	list := append(append([]dashboard.Panel(nil), dashboard.StandardPanels()...), dashboard.FleetJobPanels()...)
	for i, w := range list {
		p := timeseries.NewPanelBuilder().Title(w.Title).Datasource(cwDS).GridPos(layout(i, 0)).Unit(unitOf(w.Names[0]))
		if w.Stacked {
			p.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
		}
		for j, n := range w.Names {
			dims := cloudwatch.Dimensions{"InstanceId": cloudwatch.StringOrArrayOfString{String: cog.ToPtr("$instance")}}
			legend := n
			exact := false // configured extra dimensions (cloudwatch.dimensions) still match
			if w.Dim == "Job" {
				// Fleet-wide: the Job dimension alone.
				dims, legend, exact = cloudwatch.Dimensions{"Job": cloudwatch.StringOrArrayOfString{String: cog.ToPtr("*")}}, "${PROP('Dim.Job')}", true
			}
			p.WithTarget(cwMetric(cloudwatch.NewMetricsQueryBuilder().Datasource(cwDS).RefId(fmt.Sprintf("%c", 'A'+j)).
				QueryMode(cloudwatch.QueryModeMetrics).MetricQueryType(cloudwatch.MetricQueryTypeSearch).
				MetricEditorMode(cloudwatch.MetricEditorModeBuilder).Region("$region").Namespace("$namespace").
				MetricName(n).Dimensions(dims).MatchExact(exact).Statistic(w.Stat).Period("").Label(legend)))
		}
		b.WithPanel(p)
	}
	y := uint32((len(list)+1)/2) * 8
	b.WithPanel(timeseries.NewPanelBuilder().Title("EC2 status check failed (AWS/EC2; the reboot alarm's metric)").Datasource(cwDS).
		GridPos(gd.GridPos{X: 0, Y: y, W: 12, H: 8}).Unit("short").
		WithTarget(cwMetric(cloudwatch.NewMetricsQueryBuilder().Datasource(cwDS).RefId("A").QueryMode(cloudwatch.QueryModeMetrics).
			MetricQueryType(cloudwatch.MetricQueryTypeSearch).MetricEditorMode(cloudwatch.MetricEditorModeBuilder).
			Region("$region").Namespace("AWS/EC2").MetricName("StatusCheckFailed").
			Dimensions(cloudwatch.Dimensions{"InstanceId": cloudwatch.StringOrArrayOfString{String: cog.ToPtr("$instance")}}).
			MatchExact(true).Statistic("Maximum").Period(""))))
	f := fleet.Filter{Instance: "$instance", Limit: 50}
	logs := func(title, query string, pos gd.GridPos) {
		b.WithPanel(table.NewPanelBuilder().Title(title).Datasource(cwDS).GridPos(pos).
			WithTarget(cloudwatch.NewMetricsQueryOrLogsQueryOrAnnotationQueryBuilder().LogsQuery(cloudwatch.NewLogsQueryBuilder().Datasource(cwDS).RefId("A").QueryMode(cloudwatch.QueryModeLogs).
				Region("$region").LogGroupNames([]string{"$loggroup"}).Expression(query))))
	}
	logs("Incidents (CloudWatch Logs Insights; ec2diag fleet incidents)", fleet.IncidentsQuery(f), gd.GridPos{X: 0, Y: y + 8, W: 24, H: 10})
	logs("Jobs most often blamed, all instances (ec2diag fleet jobs)", fleet.TopJobsQuery(fleet.Filter{Limit: 50}), gd.GridPos{X: 12, Y: y, W: 12, H: 8})
	return build(b)
}

// promWidgets are the panels of the Prometheus dashboard: the standard
// ones, and the per-interface and notice panels of the detailed set (the
// local endpoint carries every field; it costs nothing per metric).
func promWidgets() []dashboard.Panel {
	var out []dashboard.Panel
	out = append(out, dashboard.StandardPanels()...)
	for _, w := range dashboard.DetailedPanels() {
		if w.Dim == "Interface" || strings.HasPrefix(w.Title, "AWS notices") {
			out = append(out, w)
		}
	}
	return out
}

// GrafanaPrometheus is the dashboard for a Prometheus that scrapes the
// agent's endpoint (prometheus.listen), with the catalogue's names turned
// into the endpoint's series by metrics.PromQuery.
func GrafanaPrometheus() ([]byte, error) {
	b := gd.NewDashboardBuilder("ec2diag (Prometheus)").Uid("ec2diag-prometheus").Tags([]string{"ec2diag", "ec2"}).
		Editable().Time("now-6h", "now").Refresh("1m").Timezone("browser").
		WithVariable(gd.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus")).
		WithVariable(gd.NewQueryVariableBuilder("instance").Label("Instance").Datasource(promDS).
			Query(gd.StringOrMap{String: cog.ToPtr("label_values(ec2diag_host_cpu_busy_pct, instance)")}).
			Refresh(gd.VariableRefreshOnTimeRangeChanged).Sort(gd.VariableSortAlphabeticalAsc).Multi(true).IncludeAll(true))
	i := 0
	for _, w := range promWidgets() {
		p := timeseries.NewPanelBuilder().Title(w.Title).Datasource(promDS).Unit(unitOf(w.Names[0]))
		if w.Stacked {
			p.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
		}
		n := 0
		for _, name := range w.Names {
			expr, ok := metrics.PromQuery(name, `instance=~"$instance"`, "$__rate_interval")
			if !ok {
				continue
			}
			legend := "{{instance}} " + name
			if w.Dim == "Interface" {
				legend = "{{instance}} {{interface}} " + name
			}
			p.WithTarget(prometheus.NewDataqueryBuilder().Datasource(promDS).RefId(fmt.Sprintf("%c", 'A'+n)).Expr(expr).LegendFormat(legend))
			n++
		}
		if n == 0 {
			continue
		}
		b.WithPanel(p.GridPos(layout(i, 0)))
		i++
	}
	return build(b)
}

func build(b *gd.DashboardBuilder) ([]byte, error) {
	d, err := b.Build()
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(d, "", "  ")
}

func cwMetric(q *cloudwatch.MetricsQueryBuilder) cog.Builder[variants.Dataquery] {
	return cloudwatch.NewMetricsQueryOrLogsQueryOrAnnotationQueryBuilder().MetricsQuery(q)
}

func str(s string) gd.StringOrMap { return gd.StringOrMap{String: &s} }
