// CMicroHTTPD: the thin C shim between Swift and libmicrohttpd.
//
// Swift imports most of <microhttpd.h> directly (MHD_queue_response, MHD_create_response_*,
// MHD_lookup_connection_value, MHD_stop_daemon, ...). This shim exists only for what Swift cannot
// call: C variadic functions (MHD_start_daemon, MHD_get_connection_info) and callbacks that take a
// va_list (the error logger). Every function below says which of those it wraps.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <microhttpd.h>

/// How the daemon is started. Plain struct so Swift can fill it without varargs.
typedef struct rind_mhd_options {
    /// A socket already bound and listening (the Swift side binds it so it can report errno and
    /// the ephemeral port itself); passed as MHD_OPTION_LISTEN_SOCKET.
    int listen_fd;
    /// 1: one thread per connection (streaming callbacks may block waiting for job events);
    /// 0: one internal polling thread with a pool of `thread_pool_size` threads.
    int thread_per_connection;
    unsigned int thread_pool_size;
    /// MHD_OPTION_CONNECTION_LIMIT: total concurrent connections (0 = libmicrohttpd's default).
    unsigned int connection_limit;
    /// MHD_OPTION_PER_IP_CONNECTION_LIMIT (0 = unlimited).
    unsigned int per_ip_connection_limit;
    /// MHD_OPTION_CONNECTION_TIMEOUT: seconds of inactivity before a connection is closed.
    unsigned int connection_timeout_s;
    /// MHD_OPTION_CONNECTION_MEMORY_LIMIT: per-connection memory pool, which bounds the size of the
    /// request line plus headers (libmicrohttpd answers 431 when they do not fit).
    size_t connection_memory_limit;
    /// MHD_OPTION_NOTIFY_CONNECTION: told when a connection opens and closes (NULL = none); the
    /// daemon uses it to bound the time a connection may take to send one request.
    MHD_NotifyConnectionCallback notify_connection;
    void *notify_connection_cls;
    /// MHD_OPTION_URI_LOG_CALLBACK: sees the raw request target before libmicrohttpd decodes it or
    /// splits its query (NULL = none); its return value becomes the request's context.
    void *(*uri_log)(void *cls, const char *uri, struct MHD_Connection *connection);
    void *uri_log_cls;
} rind_mhd_options;

/// Receives one formatted libmicrohttpd error message (already expanded from its va_list).
typedef void (*rind_mhd_log_callback)(void *cls, const char *message);

/// Starts a daemon. Exists because MHD_start_daemon is variadic (its options are a
/// NULL-terminated vararg list), which Swift cannot call. Returns NULL on failure.
struct MHD_Daemon *rind_mhd_start(const rind_mhd_options *options,
                                  MHD_AccessHandlerCallback handler, void *handler_cls,
                                  MHD_RequestCompletedCallback completed, void *completed_cls,
                                  rind_mhd_log_callback log, void *log_cls);

/// The connection's socket. Exists because MHD_get_connection_info is variadic. -1 when unknown.
int rind_mhd_connection_fd(struct MHD_Connection *connection);

/// The value MHD_OPTION_NOTIFY_CONNECTION stored for this connection (MHD_CONNECTION_INFO_SOCKET_CONTEXT).
/// Exists because MHD_get_connection_info is variadic. NULL when none.
void *rind_mhd_socket_context(struct MHD_Connection *connection);

/// Bytes of the request line and header fields as received (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE).
/// Exists because MHD_get_connection_info is variadic. 0 when unknown.
size_t rind_mhd_request_header_size(struct MHD_Connection *connection);

/// Writes the client's numeric address ("127.0.0.1", "::1") into `buffer`. Exists because
/// MHD_get_connection_info is variadic. Returns 0 on success, -1 when unknown.
int rind_mhd_client_address(struct MHD_Connection *connection, char *buffer, size_t length);
