import FoundationEssentials
import Glibc

/// One metric value for PutMetricData.
public struct MetricDatum: Sendable, Equatable {
    public var name: String
    public var value: Double
    public var unit: String
    public var timestamp: Date
    public var dimensions: [(String, String)]

    public init(name: String, value: Double, unit: String = "Count", timestamp: Date, dimensions: [(String, String)] = []) {
        self.name = name
        self.value = value
        self.unit = unit
        self.timestamp = timestamp
        self.dimensions = dimensions
    }

    public static func == (a: MetricDatum, b: MetricDatum) -> Bool {
        a.name == b.name && a.value == b.value && a.unit == b.unit && a.timestamp == b.timestamp
            && a.dimensions.elementsEqual(b.dimensions, by: ==)
    }
}

/// CloudWatch's query API (form POST, version 2010-08-01), PutMetricData only.
public struct CloudWatchClient: Sendable {
    public let client: AWSClient
    let endpoint: AWSContext.Endpoint
    /// PutMetricData accepts at most 1000 metric values per request.
    public static let maxPerRequest = 1000

    public init(context: AWSContext, transport: HTTPTransport, retrier: Retrier) {
        endpoint = context.cloudWatchEndpoint
        client = AWSClient(service: "monitoring", region: context.region, credentials: context.credentials,
                           transport: transport, retrier: retrier)
    }

    /// Sends every datum, in batches of at most 1000, keeping each datum's own timestamp.
    public func putMetricData(namespace: String, _ data: [MetricDatum]) throws {
        var start = 0
        while start < data.count {
            let batch = data[start..<min(start + Self.maxPerRequest, data.count)]
            let body = Array(Self.formBody(namespace: namespace, batch).utf8)
            let request = HTTPRequest(method: "POST", scheme: endpoint.scheme, host: endpoint.host,
                                      path: endpoint.basePath.isEmpty ? "/" : endpoint.basePath + "/",
                                      headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
                                      body: .bytes(body))
            _ = try client.send(request, payloadSHA256: SHA256.hash(body).hex, operation: "PutMetricData",
                                resource: "cloudwatch \(namespace)")
            start += batch.count
        }
    }

    static func formBody(namespace: String, _ data: ArraySlice<MetricDatum>) -> String {
        var fields = [("Action", "PutMetricData"), ("Version", "2010-08-01"), ("Namespace", namespace)]
        for (i, d) in data.enumerated() {
            let m = "MetricData.member.\(i + 1)"
            fields += [("\(m).MetricName", d.name), ("\(m).Value", Self.format(d.value)),
                       ("\(m).Unit", d.unit), ("\(m).Timestamp", AWSTime.iso8601(d.timestamp))]
            for (j, dim) in d.dimensions.enumerated() {
                fields += [("\(m).Dimensions.member.\(j + 1).Name", dim.0), ("\(m).Dimensions.member.\(j + 1).Value", dim.1)]
            }
        }
        return fields.map { URIEncoding.encode($0.0, keepSlash: false) + "=" + URIEncoding.encode($0.1, keepSlash: false) }
            .joined(separator: "&")
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}
