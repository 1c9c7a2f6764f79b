// The lifetime of one libmicrohttpd daemon, in one object.
import CMicroHTTPD
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The one owner of a running libmicrohttpd daemon (`struct MHD_Daemon *`): the MHD handle, the
/// listening socket, and the object MHD's callbacks point at.
///
/// - The listening socket is MHD's from the start: `MHD_stop_daemon` closes it, so nothing else may
///   (a second `close` of the same number would close whatever another thread opened meanwhile).
/// - The callback context is retained here and released only after `MHD_stop_daemon` has returned,
///   when every connection thread has been joined and no callback can run any more.
/// - ``stop()`` runs once, however many times and from wherever it is called; `deinit` calls it.
final class MHDDaemonHandle: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var daemon: OpaquePointer?
    private var context: Unmanaged<AnyObject>?
    private var didStopHook: (@Sendable (Int32) -> Void)?
    /// The listening socket MHD serves and closes.
    let listenSocket: Int32

    /// Called once, right after `MHD_stop_daemon` has returned, with ``listenSocket`` (closed by then).
    var didStop: (@Sendable (Int32) -> Void)? {
        get { lock.withLock { didStopHook } }
        set { lock.withLock { didStopHook = newValue } }
    }

    private init(daemon: OpaquePointer, listenSocket: Int32, context: Unmanaged<AnyObject>) {
        self.daemon = daemon
        self.listenSocket = listenSocket
        self.context = context
    }

    /// Starts MHD on `listenSocket` with `start`, which gets the pointer to pass as every callback's
    /// context (`context`, retained until the daemon has stopped) and returns MHD's handle or NULL.
    /// The socket belongs to the daemon from here on; when the start fails it is closed here,
    /// unless libmicrohttpd already closed it on its way out (some of its failure paths do).
    static func start(listenSocket: Int32, context: AnyObject,
                      _ start: (UnsafeMutableRawPointer) -> OpaquePointer?) -> MHDDaemonHandle? {
        let socket = SocketIdentity(listenSocket)
        let retained = Unmanaged.passRetained(context)
        guard let daemon = start(retained.toOpaque()) else {
            retained.release()
            if let socket, SocketIdentity(listenSocket) == socket { close(listenSocket) }
            return nil
        }
        return MHDDaemonHandle(daemon: daemon, listenSocket: listenSocket, context: retained)
    }

    deinit { stop() }

    /// Stops MHD: it closes the listening socket and every connection and joins their threads;
    /// then the callback context is released. A concurrent call waits until the first is done;
    /// later calls do nothing. Never call it from one of the daemon's own callbacks (MHD would
    /// wait for the very thread that asks).
    func stop() {
        // Held throughout, so that no caller returns while the daemon still runs. Callbacks never
        // take this lock.
        lock.lock()
        defer { lock.unlock() }
        guard let daemon else { return }
        self.daemon = nil
        MHD_stop_daemon(daemon)
        didStopHook?(listenSocket)
        context?.release()
        context = nil
    }
}

/// What a descriptor refers to (device and inode): tells whether a number still names the same
/// socket, or was closed and perhaps reused for another file.
private struct SocketIdentity: Equatable {
    let device: UInt64
    let inode: UInt64

    init?(_ descriptor: Int32) {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
