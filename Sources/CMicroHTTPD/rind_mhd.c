#include "rind_mhd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// libmicrohttpd hands its error messages to MHD_OPTION_EXTERNAL_LOGGER as a printf format plus a
// va_list; Swift cannot consume a va_list in a C callback, so this trampoline formats the message
// and forwards plain text. Every daemon uses the same Swift function (it is a static @convention(c)
// function), so one process-wide pointer suffices; the per-daemon context travels as MHD's cls.
static rind_mhd_log_callback rind_log_function = NULL;

static void rind_mhd_logger(void *cls, const char *format, va_list ap) {
    rind_mhd_log_callback log = __atomic_load_n(&rind_log_function, __ATOMIC_ACQUIRE);
    if (log == NULL) return;
    char message[1024];
    vsnprintf(message, sizeof message, format, ap);
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r')) message[--n] = '\0';
    log(cls, message);
}

struct MHD_Daemon *rind_mhd_start(const rind_mhd_options *o,
                                  MHD_AccessHandlerCallback handler, void *handler_cls,
                                  MHD_RequestCompletedCallback completed, void *completed_cls,
                                  rind_mhd_log_callback log, void *log_cls) {
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (o->thread_per_connection) flags |= MHD_USE_THREAD_PER_CONNECTION;

    struct MHD_OptionItem items[16];
    int n = 0;
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, o->listen_fd, NULL};
    if (o->connection_limit)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, o->connection_limit, NULL};
    if (o->per_ip_connection_limit)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                             o->per_ip_connection_limit, NULL};
    if (o->connection_timeout_s)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                             o->connection_timeout_s, NULL};
    if (o->connection_memory_limit)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                             (intptr_t)o->connection_memory_limit, NULL};
    if (!o->thread_per_connection && o->thread_pool_size > 1)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, o->thread_pool_size, NULL};
    if (o->notify_connection != NULL)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)o->notify_connection,
                                             o->notify_connection_cls};
    if (o->uri_log != NULL)
        items[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)o->uri_log, o->uri_log_cls};
    items[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    if (log != NULL) {
        __atomic_store_n(&rind_log_function, log, __ATOMIC_RELEASE);
        flags |= MHD_USE_ERROR_LOG;
        // The logger must be the first option, or MHD prints early messages itself.
        return MHD_start_daemon(flags, 0, NULL, NULL, handler, handler_cls,
                                MHD_OPTION_EXTERNAL_LOGGER, rind_mhd_logger, log_cls,
                                MHD_OPTION_ARRAY, items,
                                MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
                                MHD_OPTION_END);
    }
    return MHD_start_daemon(flags, 0, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, items,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
                            MHD_OPTION_END);
}

int rind_mhd_client_address(struct MHD_Connection *connection, char *buffer, size_t length) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL || length == 0) return -1;
    const struct sockaddr *address = info->client_addr;
    const void *raw = NULL;
    if (address->sa_family == AF_INET)
        raw = &((const struct sockaddr_in *)address)->sin_addr;
    else if (address->sa_family == AF_INET6)
        raw = &((const struct sockaddr_in6 *)address)->sin6_addr;
    else
        return -1;
    return inet_ntop(address->sa_family, raw, buffer, (socklen_t)length) ? 0 : -1;
}

int rind_mhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

void *rind_mhd_socket_context(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info == NULL ? NULL : info->socket_context;
}

size_t rind_mhd_request_header_size(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    return info == NULL ? 0 : info->header_size;
}
