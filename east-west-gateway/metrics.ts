// The gateway's Prometheus metrics, in the process registry served on /metrics. Labels name the
// service and the clusters a connection came from and went to; refusals carry their reason.
import { Counter, Gauge, Histogram } from 'prom-client';

const flowLabels = ['direction', 'namespace', 'service', 'source_cluster', 'destination_cluster'] as const;

export const gatewayMetrics = {
  connections: new Counter({
    name: 'isthmus_gateway_connections_total',
    help: 'Connections handled, by direction (inbound from another gateway, outbound from a local client), service, clusters and result.',
    labelNames: [...flowLabels, 'result'] as const,
  }),
  activeConnections: new Gauge({
    name: 'isthmus_gateway_active_connections',
    help: 'Connections open now.',
    labelNames: ['direction'] as const,
  }),
  bytes: new Counter({
    name: 'isthmus_gateway_bytes_total',
    help: 'Bytes carried, by direction of the connection and of the bytes (sent = towards the backend).',
    labelNames: [...flowLabels, 'flow'] as const,
  }),
  connectDuration: new Histogram({
    name: 'isthmus_gateway_connect_duration_seconds',
    help: "Time to a connected backend: TCP connect for local endpoints, TLS handshake and the far gateway's answer for remote clusters.",
    labelNames: ['destination_cluster', 'target'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  }),
  refusals: new Counter({
    name: 'isthmus_gateway_refusals_total',
    help: 'Inbound connections refused before reaching a backend, by reason.',
    labelNames: ['reason'] as const,
  }),
  ejections: new Counter({
    name: 'isthmus_gateway_ejections_total',
    help: 'Connect targets ejected by outlier detection or failed probes.',
    labelNames: ['target', 'cause'] as const,
  }),
  failovers: new Counter({
    name: 'isthmus_gateway_failovers_total',
    help: 'Connects that failed and moved on to the next candidate, by service and the cluster that failed.',
    labelNames: ['namespace', 'service', 'failed_cluster'] as const,
  }),
  trafficShare: new Gauge({
    name: 'isthmus_gateway_traffic_share',
    help: "Fraction of new connections of a service port each cluster takes now, with its locality level (0 = the client's own).",
    labelNames: ['namespace', 'service', 'port', 'cluster', 'level'] as const,
  }),
  listeners: new Gauge({
    name: 'isthmus_gateway_outbound_listeners',
    help: 'Outbound listeners open (one per imported service port).',
  }),
};
