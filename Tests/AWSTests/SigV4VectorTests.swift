import Foundation
import Testing
@testable import AWS
import TestSupport

/// AWS's published Signature Version 4 suite (fixtures/sigv4, from awslabs/aws-c-auth), case by case.
struct SigV4VectorTests {
    struct Context: Decodable {
        struct Creds: Decodable {
            var access_key_id: String
            var secret_access_key: String
            var token: String?
        }
        var credentials: Creds
        var region: String
        var service: String
        var timestamp: String
        var normalize: Bool
        var sign_body: Bool
        var omit_session_token: Bool?
    }

    static let cases: [String] = {
        let dir = Fixtures.root.appendingPathComponent("sigv4")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: dir.appendingPathComponent("\($0)/request.txt").path) }.sorted()
    }()

    @Test func suiteIsPresent() {
        #expect(Self.cases.count == 38)
    }

    /// Parses request.txt: request line, headers (folded continuation lines), blank line, body.
    static func parseRequest(_ text: String) throws -> HTTPRequest {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        let method = String(requestLine.prefix { $0 != " " })
        let target = String(requestLine.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count))
        var path = target
        var query: [(String, String)] = []
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            for pair in target[target.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                query.append((URIEncoding.decode(String(kv[0])), kv.count > 1 ? URIEncoding.decode(String(kv[1])) : ""))
            }
        }
        var headers: [(String, String)] = []
        var bodyLines: [String]? = nil
        for line in lines {
            if bodyLines != nil { bodyLines!.append(line); continue }
            if line.isEmpty { bodyLines = []; continue }
            if line.first == " " || line.first == "\t" {
                headers[headers.count - 1].1 += "\n" + line
                continue
            }
            let colon = line.firstIndex(of: ":")!
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        let body = Array((bodyLines ?? []).joined(separator: "\n").utf8)
        let host = headers.first { $0.0.lowercased() == "host" }!.1
        return HTTPRequest(method: method, scheme: "https", host: host, path: path, query: query,
                           headers: headers, body: body.isEmpty ? .empty : .bytes(body))
    }

    @Test(arguments: cases)
    func headerSigningMatchesAWS(_ name: String) throws {
        let ctx = try JSONDecoder().decode(Context.self, from: Data(try Fixtures.text("sigv4/\(name)/context.json").utf8))
        var request = try Self.parseRequest(try Fixtures.text("sigv4/\(name)/request.txt"))
        var signer = SigV4Signer(service: ctx.service, region: ctx.region)
        signer.normalizePath = ctx.normalize
        signer.doubleEncodePath = true
        signer.sendsContentSHA256 = ctx.sign_body
        let body: [UInt8] = if case .bytes(let b) = request.body { b } else { [] }
        let creds = Credentials(accessKeyId: ctx.credentials.access_key_id, secretAccessKey: ctx.credentials.secret_access_key,
                                sessionToken: ctx.credentials.token, source: "fixture")
        let date = try #require(AWSTime.parseISO8601(ctx.timestamp))
        let sig = signer.sign(&request, payloadSHA256: SHA256.hash(body).hex, credentials: creds, date: date,
                              omitSessionTokenFromSignature: ctx.omit_session_token ?? false)

        #expect(sig.canonicalRequest == (try Fixtures.text("sigv4/\(name)/header-canonical-request.txt")))
        #expect(sig.stringToSign == (try Fixtures.text("sigv4/\(name)/header-string-to-sign.txt")))
        #expect(sig.signature == (try Fixtures.text("sigv4/\(name)/header-signature.txt")).trimmingCharacters(in: .whitespacesAndNewlines))
        let signed = try Fixtures.text("sigv4/\(name)/header-signed-request.txt")
        let authLine = signed.components(separatedBy: "\n").first { $0.hasPrefix("Authorization:") }
        #expect(authLine == "Authorization:" + sig.authorization)
        if let token = ctx.credentials.token {
            #expect(request.header("X-Amz-Security-Token") == token)
        }
    }
}
