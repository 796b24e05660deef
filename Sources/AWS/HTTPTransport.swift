import CCurl
import FoundationEssentials
import Glibc
import Synchronization

/// A response: status, headers (names lowercased) and, unless streamed to a sink, the body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Where a successful (2xx) response body goes. Error bodies are always collected for parsing.
public enum ResponseSink {
    case memory
    /// Written with pwrite at `offset`, so a retried attempt overwrites the same range.
    case file(fd: Int32, offset: Int64)
    /// Each chunk as it arrives; throwing aborts the transfer.
    case handler((UnsafeRawBufferPointer) throws -> Void)
}

/// What went wrong below HTTP: the kinds decide whether a retry can help.
public enum TransportErrorKind: String, Sendable {
    case timeout, connectionReset, connect, dns, tls, local, other
}

public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var kind: TransportErrorKind
    public var message: String
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// HTTP over libcurl. Keeps a small pool of easy handles so each worker reuses its connection
/// (keep-alive); `perform` is safe to call from several threads at once.
public final class HTTPTransport: Sendable {
    public struct Options: Sendable {
        public var connectTimeout: Int = 10
        /// Abort a transfer slower than 1 byte/s for this many seconds.
        public var lowSpeedSeconds: Int = 60
        public var maxIdleHandles: Int = 16
        public init() {}
    }

    private let options: Options
    private let idle = Mutex<[CurlHandle]>([])

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init(options: Options = Options()) {
        _ = Self.globalInit
        self.options = options
    }

    public func perform(_ request: HTTPRequest, sink: ResponseSink = .memory) throws -> HTTPResponse {
        let handle = idle.withLock { $0.popLast() } ?? CurlHandle()
        // Only a handle that completed goes back to the pool; a failed one may hold a broken connection.
        let response = try handle.perform(request, sink: sink, options: options)
        idle.withLock { if $0.count < options.maxIdleHandles { $0.append(handle) } }
        return response
    }
}

/// One curl easy handle. Not shared between threads; the transport's pool hands it to one at a time.
final class CurlHandle: @unchecked Sendable {
    private let curl: UnsafeMutableRawPointer

    init() {
        curl = curl_easy_init()
    }

    deinit { curl_easy_cleanup(curl) }

    func perform(_ request: HTTPRequest, sink: ResponseSink, options: HTTPTransport.Options) throws -> HTTPResponse {
        curl_easy_reset(curl)
        let ctx = TransferContext(sink: sink)
        defer { ctx.close() }
        try ctx.openBody(request.body)

        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(list) }
        for (name, value) in request.headers {
            list = curl_slist_append(list, "\(name): \(value)")
        }
        // No 100-continue round trip; curl must not add its own Content-Type to POSTs either.
        list = curl_slist_append(list, "Expect:")
        if request.header("Content-Type") == nil { list = curl_slist_append(list, "Content-Type:") }

        let opaque = Unmanaged.passUnretained(ctx).toOpaque()
        ecc_setopt_string(curl, CURLOPT_URL, request.url)
        // S3 keys may hold "." and ".." segments: curl must send the path exactly as signed.
        ecc_setopt_long(curl, CURLOPT_PATH_AS_IS, 1)
        ecc_setopt_long(curl, CURLOPT_NOSIGNAL, 1)
        ecc_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1)
        ecc_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2)
        ecc_setopt_long(curl, CURLOPT_TCP_KEEPALIVE, 1)
        ecc_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, options.connectTimeout)
        ecc_setopt_long(curl, CURLOPT_LOW_SPEED_LIMIT, 1)
        ecc_setopt_long(curl, CURLOPT_LOW_SPEED_TIME, options.lowSpeedSeconds)
        ecc_setopt_long(curl, CURLOPT_BUFFERSIZE, 256 * 1024)
        ecc_setopt_long(curl, CURLOPT_UPLOAD_BUFFERSIZE, 512 * 1024)
        ecc_setopt_slist(curl, CURLOPT_HTTPHEADER, list)
        ecc_setopt_pointer(curl, CURLOPT_ERRORBUFFER, ctx.errorBuffer)
        ecc_setopt_datafn(curl, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
        ecc_setopt_pointer(curl, CURLOPT_HEADERDATA, opaque)
        ecc_setopt_datafn(curl, CURLOPT_WRITEFUNCTION, curlWriteCallback)
        ecc_setopt_pointer(curl, CURLOPT_WRITEDATA, opaque)

        switch request.method {
        case "HEAD":
            ecc_setopt_long(curl, CURLOPT_NOBODY, 1)
        case "GET":
            ecc_setopt_long(curl, CURLOPT_HTTPGET, 1)
        case "PUT", "POST":
            // UPLOAD streams from the read callback and sends Content-Length (0 for an empty body).
            ecc_setopt_long(curl, CURLOPT_UPLOAD, 1)
            ecc_setopt_off(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length))
            ecc_setopt_datafn(curl, CURLOPT_READFUNCTION, curlReadCallback)
            ecc_setopt_pointer(curl, CURLOPT_READDATA, opaque)
            ecc_setopt_seekfn(curl, curlSeekCallback)
            ecc_setopt_pointer(curl, CURLOPT_SEEKDATA, opaque)
            if request.method == "POST" { ecc_setopt_string(curl, CURLOPT_CUSTOMREQUEST, "POST") }
        default:
            ecc_setopt_string(curl, CURLOPT_CUSTOMREQUEST, request.method)
        }

        let code = curl_easy_perform(curl)
        if let failure = ctx.failure { throw failure }
        guard code == CURLE_OK else { throw Self.transportError(code, ctx.errorMessage) }
        var status = 0
        ecc_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: ctx.headers, body: ctx.collected)
    }

    static func transportError(_ code: CURLcode, _ detail: String) -> TransportError {
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let kind: TransportErrorKind
        switch code {
        case CURLE_OPERATION_TIMEDOUT: kind = .timeout
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: kind = .dns
        case CURLE_COULDNT_CONNECT: kind = .connect
        case CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE,
             CURLE_HTTP2, CURLE_HTTP2_STREAM:
            kind = .connectionReset
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
             CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER:
            kind = .tls
        case CURLE_READ_ERROR, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK, CURLE_OUT_OF_MEMORY:
            kind = .local
        default: kind = .other
        }
        return TransportError(kind: kind, message: message)
    }
}

/// Per-transfer state the C callbacks reach through their userdata pointer.
final class TransferContext {
    var sink: ResponseSink
    var headers: [String: String] = [:]
    var status = 0
    var collected: [UInt8] = []
    var written: Int64 = 0
    var failure: Error?
    let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    var bodyBytes: [UInt8] = []
    var bodyFD: Int32 = -1
    var bodyOffset: Int64 = 0
    var bodyLength: Int64 = 0
    var bodyPosition: Int64 = 0
    var bodyPath = ""

    /// Error bodies are parsed for S3's XML; anything larger is not an S3 error document.
    static let errorBodyLimit = 1 << 20

    init(sink: ResponseSink) {
        self.sink = sink
        errorBuffer.initialize(to: 0)
    }

    var errorMessage: String { String(cString: errorBuffer) }

    func openBody(_ body: RequestBody) throws {
        switch body {
        case .empty: bodyLength = 0
        case .bytes(let b):
            bodyBytes = b
            bodyLength = Int64(b.count)
        case .file(let path, let offset, let length):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw TransportError(kind: .local, message: "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            bodyFD = fd
            bodyPath = path
            bodyOffset = offset
            bodyLength = length
        }
    }

    func close() {
        if bodyFD >= 0 { _ = Glibc.close(bodyFD) }
        bodyFD = -1
        errorBuffer.deallocate()
    }

    func read(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let want = Int(min(Int64(capacity), bodyLength - bodyPosition))
        if want <= 0 { return 0 }
        if bodyFD >= 0 {
            let n = pread(bodyFD, buffer, want, off_t(bodyOffset + bodyPosition))
            if n <= 0 {
                // The file shrank or failed under us: never send a short body as if it were whole.
                let why = n < 0 ? String(cString: strerror(errno)) : "file is shorter than when the upload started"
                failure = TransportError(kind: .local, message: "reading \(bodyPath): \(why)")
                return Int(CURL_READFUNC_ABORT)
            }
            bodyPosition += Int64(n)
            return n
        }
        bodyBytes.withUnsafeBytes { src in
            buffer.copyMemory(from: src.baseAddress! + Int(bodyPosition), byteCount: want)
        }
        bodyPosition += Int64(want)
        return want
    }

    func write(_ chunk: UnsafeRawBufferPointer) -> Bool {
        if status < 200 || status > 299 {
            if collected.count + chunk.count <= Self.errorBodyLimit { collected.append(contentsOf: chunk) }
            return true
        }
        do {
            switch sink {
            case .memory:
                collected.append(contentsOf: chunk)
            case .file(let fd, let offset):
                var done = 0
                while done < chunk.count {
                    let n = pwrite(fd, chunk.baseAddress! + done, chunk.count - done, off_t(offset + written + Int64(done)))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw TransportError(kind: .local, message: "writing response body: \(String(cString: strerror(errno)))")
                    }
                    done += n
                }
            case .handler(let handle):
                try handle(chunk)
            }
            written += Int64(chunk.count)
            return true
        } catch {
            failure = error
            return false
        }
    }

    func header(_ line: UnsafeRawBufferPointer) {
        let text = String(decoding: line, as: UTF8.self)
        if text.hasPrefix("HTTP/") {
            // A new status line (after 100 Continue or a redirect) starts a new header block.
            headers = [:]
            let parts = text.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            return
        }
        guard let colon = text.firstIndex(of: ":") else { return }
        let name = text[..<colon].lowercased()
        let value = text[text.index(after: colon)...].trimmed
        if let existing = headers[name] { headers[name] = existing + "," + value } else { headers[name] = value }
    }
}

private func context(_ p: UnsafeMutableRawPointer?) -> TransferContext {
    Unmanaged<TransferContext>.fromOpaque(p!).takeUnretainedValue()
}

private let curlWriteCallback: ecc_data_callback = { ptr, size, count, userdata in
    let n = size * count
    let ok = context(userdata).write(UnsafeRawBufferPointer(start: ptr, count: n))
    return ok ? n : 0
}

private let curlHeaderCallback: ecc_data_callback = { ptr, size, count, userdata in
    let n = size * count
    context(userdata).header(UnsafeRawBufferPointer(start: ptr, count: n))
    return n
}

private let curlReadCallback: ecc_data_callback = { ptr, size, count, userdata in
    context(userdata).read(into: UnsafeMutableRawPointer(ptr!), capacity: size * count)
}

private let curlSeekCallback: ecc_seek_callback = { userdata, offset, origin in
    let ctx = context(userdata)
    guard origin == SEEK_SET, offset >= 0, Int64(offset) <= ctx.bodyLength else { return Int32(CURL_SEEKFUNC_CANTSEEK) }
    ctx.bodyPosition = Int64(offset)
    return Int32(CURL_SEEKFUNC_OK)
}
