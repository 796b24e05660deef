import FoundationEssentials
import Glibc
import Synchronization

/// Retries one request the way the AWS SDKs' "standard" mode does: full-jitter exponential backoff
/// capped at 20 s, `Retry-After` honoured, only transient failures retried, and a shared token bucket
/// so that an outage turns into quick failures instead of a retry storm. The only retry loop in the
/// code base: every AWS request goes through `run`.
public final class Retrier: Sendable {
    public struct Policy: Sendable {
        /// Total attempts, the first included.
        public var maxAttempts = 3
        public var baseDelay: Double = 1
        public var maxBackoff: Double = 20
        /// Longest `Retry-After` we will wait; longer answers fail now and are retried by the caller's queue.
        public var maxRetryAfter: Double = 60
        public var bucketCapacity = 500
        public var retryCost = 5
        public var timeoutCost = 10
        public init() {}
    }

    public enum Decision: Sendable, Equatable {
        case fail
        case retry(timeout: Bool)
        /// Credentials expired: refresh them, then retry without spending tokens.
        case refreshCredentials
    }

    public let policy: Policy
    private let tokens: Mutex<Int>
    private let sleep: @Sendable (Double) -> Void
    private let random: @Sendable () -> Double

    public init(policy: Policy = Policy(),
                sleep: @escaping @Sendable (Double) -> Void = { if $0 > 0 { usleep(useconds_t(min($0, 3600) * 1_000_000)) } },
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        self.policy = policy
        self.tokens = Mutex(policy.bucketCapacity)
        self.sleep = sleep
        self.random = random
    }

    public var availableTokens: Int { tokens.withLock { $0 } }

    /// Runs `attempt` (given the attempt number from 1) until it succeeds, fails for good, or the
    /// attempts or tokens run out. `onRefresh` is called before a retry caused by expired credentials.
    public func run<T>(onRefresh: () -> Void = {}, _ attempt: (Int) throws -> T) throws -> T {
        var spent = 0
        var refreshed = false
        var number = 1
        while true {
            do {
                let value = try attempt(number)
                tokens.withLock { $0 = min(policy.bucketCapacity, $0 + (spent > 0 ? spent : 1)) }
                return value
            } catch {
                let decision = Self.classify(error)
                if decision == .refreshCredentials && !refreshed {
                    refreshed = true
                    onRefresh()
                    continue
                }
                guard case .retry(let timeout) = decision, number < policy.maxAttempts else { throw error }
                let cost = timeout ? policy.timeoutCost : policy.retryCost
                let acquired = tokens.withLock { t -> Bool in
                    guard t >= cost else { return false }
                    t -= cost
                    return true
                }
                guard acquired else { throw error }
                spent += cost
                sleep(delay(afterAttempt: number, error: error))
                number += 1
            }
        }
    }

    /// random(0,1) × min(base × 2^(attempt-1), 20 s), or the server's `Retry-After` when it is longer.
    func delay(afterAttempt attempt: Int, error: Error) -> Double {
        let backoff = random() * min(policy.baseDelay * pow(2, Double(attempt - 1)), policy.maxBackoff)
        if case AWSError.service(let e)? = error as? AWSError, let after = e.retryAfter {
            return max(backoff, min(after, policy.maxRetryAfter))
        }
        return backoff
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
        "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
    ]
    static let transientCodes: Set<String> = [
        "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
        "IDPCommunicationError",
    ]
    static let expiredCodes: Set<String> = [
        "ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired",
    ]

    public static func classify(_ error: Error) -> Decision {
        switch error as? AWSError {
        case .service(let e)?:
            if expiredCodes.contains(e.code) { return .refreshCredentials }
            if throttlingCodes.contains(e.code) || transientCodes.contains(e.code) { return .retry(timeout: false) }
            if [500, 502, 503, 504, 429].contains(e.status) { return .retry(timeout: false) }
            return .fail
        case .transport(_, _, let t)?:
            switch t.kind {
            case .timeout: return .retry(timeout: true)
            case .connectionReset, .connect, .dns, .other: return .retry(timeout: false)
            case .tls, .local: return .fail
            }
        default:
            return .fail
        }
    }
}
