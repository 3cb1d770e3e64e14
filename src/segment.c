/* The store's log segments (see segment.h). Segment ids only grow, even
 * across a reset, so a descriptor cached by a reader never names a
 * different file than it was opened for. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "stompd/log.h"
#include "stompd/segment.h"

#define SEG_MAGIC "STOMPDL2"
#define FD_CACHE 8
/* Synced appends go into zeros written ahead of them: overwriting blocks
 * the file already has changes no metadata, so their fdatasync is a data
 * write and a cache flush, not a file-system journal commit as well (the
 * zeros' own size change is committed once per this many bytes). A zero
 * record header is the end of a segment's records. */
#define SEG_PREALLOC (1u << 20)
/* Records written without an fdatasync after them (quorum_mem, a
 * catch-up, lazy index groups) are handed to the disk every this many
 * bytes: writeback starts, nothing waits for it. The fdatasync that
 * comes later (a finished segment, a checkpoint) then waits for the last
 * few MiB instead of everything the page cache took, and the disk writes
 * while the writer copies (RocksDB's bytes_per_sync, PostgreSQL's
 * wal_writer_flush_after). */
#define SEG_FLUSH_AFTER (4u << 20)

static struct {
    char dir[4096];
    pthread_mutex_t mu;     /* the list, between the writer and readers */
    uint32_t *ids;
    uint64_t *sizes;
    size_t n, cap;
    uint64_t bytes;
    uint32_t next_id;
    /* writer */
    int wfd;                /* the current (last) segment */
    uint64_t wsize;         /* its records end here */
    uint64_t zeroed;        /* and the file here (zeros written ahead) */
    uint64_t flushed;       /* writeback started up to here (SEG_FLUSH_AFTER) */
    bool opened;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .wfd = -1};

/* Readers' descriptors, each thread its own (the loop's; the thread that
 * reads for replication, offload.c): a descriptor one thread evicts is
 * never one another is reading from. A thread's are closed when it ends;
 * the loop's by seglog_close. */
static __thread struct {
    uint32_t id;
    int fd;
    uint64_t used;
} cache[FD_CACHE];
static __thread uint64_t cache_clock;
static __thread bool cache_registered;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static pthread_key_t cache_key;

static void path_of(uint32_t id, char *out, size_t len)
{
    snprintf(out, len, "%s/%08" PRIx32 ".log", L.dir, id);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void set_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static int by_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void list_add(uint32_t id, uint64_t size)
{
    pthread_mutex_lock(&L.mu);
    if (L.n == L.cap) {
        L.cap = L.cap ? L.cap * 2 : 64;
        L.ids = realloc(L.ids, L.cap * sizeof *L.ids);
        L.sizes = realloc(L.sizes, L.cap * sizeof *L.sizes);
        if (!L.ids || !L.sizes)
            abort();
    }
    L.ids[L.n] = id;
    L.sizes[L.n] = size;
    L.n++;
    L.bytes += size;
    pthread_mutex_unlock(&L.mu);
}

static int fsync_dir(void)
{
    int fd = open(L.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* The current segment is done: cut to its records and made durable, so
 * that no later segment is ever on disk while an earlier one's tail is
 * not (its unsynced records would leave a hole in the log at a power
 * loss). */
static int finish_segment(char *err, size_t errlen)
{
    if (L.wfd < 0)
        return 0;
    if ((L.zeroed > L.wsize && ftruncate(L.wfd, (off_t)L.wsize) != 0) || fdatasync(L.wfd) != 0) {
        snprintf(err, errlen, "cannot complete the log segment %08" PRIx32 ": %s", L.n ? L.ids[L.n - 1] : 0,
                 strerror(errno));
        return -errno;
    }
    L.zeroed = L.wsize;
    return 0;
}

/* A new, empty segment becomes the current one. */
static int new_segment(char *err, size_t errlen)
{
    int rc = finish_segment(err, errlen);
    if (rc)
        return rc;
    uint32_t id = L.next_id++;
    char path[4200];
    path_of(id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -errno;
    }
    char hdr[SEG_HEADER_LEN] = SEG_MAGIC;
    set_u32(hdr + 8, id);
    if (write(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr || fdatasync(fd) != 0 || fsync_dir() != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -EIO;
    }
    if (L.wfd >= 0)
        close(L.wfd);
    L.wfd = fd;
    L.wsize = L.zeroed = L.flushed = SEG_HEADER_LEN;
    list_add(id, SEG_HEADER_LEN);
    return 0;
}

int seglog_open(const char *dir, char *err, size_t errlen)
{
    snprintf(L.dir, sizeof L.dir, "%s", dir);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -errno;
    }
    uint32_t *found = NULL;
    size_t nfound = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        char tail;
        if (strlen(de->d_name) != 12 || sscanf(de->d_name, "%8x.lo%c", &id, &tail) != 2 || tail != 'g')
            continue;
        if (nfound == cap) {
            cap = cap ? cap * 2 : 64;
            found = realloc(found, cap * sizeof *found);
            if (!found)
                abort();
        }
        found[nfound++] = id;
    }
    closedir(d);
    if (nfound)
        qsort(found, nfound, sizeof *found, by_id);
    L.n = 0;
    L.bytes = 0;
    L.next_id = 1;
    for (size_t i = 0; i < nfound; i++) {
        char path[4200];
        struct stat st;
        path_of(found[i], path, sizeof path);
        if (stat(path, &st) != 0)
            continue;
        list_add(found[i], (uint64_t)st.st_size);
        L.next_id = found[i] + 1;
    }
    free(found);
    L.opened = true;
    if (L.n == 0)
        return new_segment(err, errlen);
    char path[4200];
    path_of(L.ids[L.n - 1], path, sizeof path);
    L.wfd = open(path, O_WRONLY | O_CLOEXEC);
    if (L.wfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    /* the store's replay finds where its records end (seglog_truncate) */
    L.wsize = L.zeroed = L.flushed = L.sizes[L.n - 1];
    return 0;
}

static void cache_drop_all(void)
{
    for (int i = 0; i < FD_CACHE; i++) {
        if (cache[i].fd > 0)
            close(cache[i].fd);
        cache[i].fd = 0;
        cache[i].id = 0;
    }
}

void seglog_drop_readers(void)
{
    cache_drop_all();
}

void seglog_drop_removed(void)
{
    for (int i = 0; i < FD_CACHE; i++) {
        if (cache[i].fd <= 0)
            continue;
        pthread_mutex_lock(&L.mu);
        size_t lo = 0, hi = L.n; /* ids ascend */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (L.ids[mid] < cache[i].id)
                lo = mid + 1;
            else
                hi = mid;
        }
        bool live = lo < L.n && L.ids[lo] == cache[i].id;
        pthread_mutex_unlock(&L.mu);
        if (!live) {
            close(cache[i].fd);
            cache[i].fd = 0;
            cache[i].id = 0;
        }
    }
}

static void cache_at_thread_exit(void *arg)
{
    (void)arg;
    cache_drop_all();
}

static void cache_key_make(void)
{
    if (pthread_key_create(&cache_key, cache_at_thread_exit) != 0)
        abort();
}

void seglog_close(void)
{
    cache_drop_all();
    if (L.wfd >= 0 && L.zeroed > L.wsize && ftruncate(L.wfd, (off_t)L.wsize) != 0)
        log_warn("store: cannot cut the log's zeros written ahead: %s", strerror(errno));
    if (L.wfd >= 0)
        close(L.wfd);
    L.wfd = -1;
    pthread_mutex_lock(&L.mu);
    free(L.ids);
    free(L.sizes);
    L.ids = NULL;
    L.sizes = NULL;
    L.n = L.cap = 0;
    L.bytes = 0;
    pthread_mutex_unlock(&L.mu);
    L.opened = false;
}

size_t seglog_ids(uint32_t *out, size_t max)
{
    pthread_mutex_lock(&L.mu);
    size_t n = L.n;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = L.ids[i];
    pthread_mutex_unlock(&L.mu);
    return n;
}

uint32_t seglog_current(void)
{
    pthread_mutex_lock(&L.mu);
    uint32_t id = L.n ? L.ids[L.n - 1] : 0;
    pthread_mutex_unlock(&L.mu);
    return id;
}

uint64_t seglog_bytes(void)
{
    pthread_mutex_lock(&L.mu);
    uint64_t b = L.bytes;
    pthread_mutex_unlock(&L.mu);
    return b;
}

/* ------------------------------------------------------------ writer */

uint64_t seg_batch_add(struct seg_batch *b, uint8_t type, const char *data, size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        char *hdr = realloc(b->hdr, cap * SEG_REC_HEADER);
        struct iovec *iov = realloc(b->iov, 2 * cap * sizeof *iov);
        if (!hdr || !iov)
            abort();
        b->hdr = hdr;
        b->iov = iov;
        b->cap = cap;
    }
    char *h = b->hdr + b->n * SEG_REC_HEADER;
    set_u32(h, (uint32_t)len);
    h[8] = (char)type;
    uLong crc = crc32(crc32(0L, (const Bytef *)h + 8, 1), (const Bytef *)data, (uInt)len);
    set_u32(h + 4, (uint32_t)crc);
    /* the header's address is set at the write: hdr may move until then */
    b->iov[2 * b->n + 1] = (struct iovec){(void *)data, len};
    b->n++;
    uint64_t at = b->bytes;
    b->bytes += SEG_REC_HEADER + len;
    return at;
}

void seg_batch_clear(struct seg_batch *b)
{
    b->n = 0;
    b->bytes = 0;
}

void seg_batch_free(struct seg_batch *b)
{
    free(b->iov);
    free(b->hdr);
    *b = (struct seg_batch){0};
}

static int pwrite_all(const char *p, size_t left, uint64_t off)
{
    while (left > 0) {
        ssize_t n = pwrite(L.wfd, p, left, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -ENOSPC;
        p += n;
        left -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* iov[0..cnt) at off, IOV_MAX at a time, after short writes too (iov is
 * advanced in place). */
static int pwritev_all(struct iovec *iov, size_t cnt, uint64_t off)
{
    while (cnt > 0) {
        if (iov->iov_len == 0) {
            iov++, cnt--;
            continue;
        }
        ssize_t n = pwritev(L.wfd, iov, cnt < IOV_MAX ? (int)cnt : IOV_MAX, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -ENOSPC;
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (left > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++, cnt--;
        }
        if (left) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Zeros ahead of the records, up to a chunk past end (never past the
 * size the segment rolls at). */
static int zero_ahead(uint64_t end, uint64_t roll_bytes)
{
    static const char zeros[64 << 10];
    uint64_t to = end + SEG_PREALLOC;
    if (to > roll_bytes)
        to = roll_bytes;
    while (L.zeroed < to) {
        size_t n = to - L.zeroed < sizeof zeros ? (size_t)(to - L.zeroed) : sizeof zeros;
        int rc = pwrite_all(zeros, n, L.zeroed);
        if (rc)
            return rc;
        L.zeroed += n;
    }
    return 0;
}

/* A batch written from off on failed (seglog_write), and its entries are
 * reported not stored: cut it away (or, if the file cannot be cut, zero
 * its first record's header, where reading stops), so a restart, even
 * after kill -9, does not read it back. Best effort: the store failed. */
static void discard_from(uint64_t off)
{
    static const char zeros[SEG_REC_HEADER];
    if (ftruncate(L.wfd, (off_t)off) == 0) {
        if (L.zeroed > off)
            L.zeroed = off;
    } else if (pwrite_all(zeros, sizeof zeros, off) != 0) {
        log_err("store: cannot cut a failed write from the log: a restart may read it back");
    }
    (void)fdatasync(L.wfd);
}

bool seglog_fits(uint64_t bytes, uint64_t roll_bytes)
{
    return !(L.wsize > SEG_HEADER_LEN && L.wsize + bytes > roll_bytes) && L.wsize + bytes <= UINT32_MAX;
}

int seglog_write(struct seg_batch *b, uint64_t roll_bytes, bool presync, struct seg_pos *at, char *err,
                 size_t errlen)
{
    if (L.wsize > SEG_HEADER_LEN && L.wsize + b->bytes > roll_bytes) {
        int rc = new_segment(err, errlen);
        if (rc)
            return rc;
    }
    if (L.wsize + b->bytes > UINT32_MAX) {
        snprintf(err, errlen, "a log segment would pass 4 GiB");
        return -EFBIG;
    }
    at->seg = L.ids[L.n - 1];
    at->off = (uint32_t)L.wsize;
    uint64_t off = L.wsize + b->bytes;
    for (size_t i = 0; i < b->n; i++)
        b->iov[2 * i] = (struct iovec){b->hdr + i * SEG_REC_HEADER, SEG_REC_HEADER};
    int rc = pwritev_all(b->iov, 2 * b->n, L.wsize);
    if (rc == 0 && off > L.zeroed)
        L.zeroed = off;
    if (rc == 0 && presync && off + SEG_PREALLOC / 2 > L.zeroed)
        rc = zero_ahead(off, roll_bytes);
    if (rc) {
        snprintf(err, errlen, "cannot write the log segment %08" PRIx32 ": %s", at->seg, strerror(-rc));
        discard_from(L.wsize);
        return rc;
    }
    pthread_mutex_lock(&L.mu);
    L.sizes[L.n - 1] += b->bytes;
    L.bytes += b->bytes;
    pthread_mutex_unlock(&L.mu);
    L.wsize = off;
    if (presync) {
        L.flushed = off;
    } else if (off - L.flushed >= SEG_FLUSH_AFTER) {
#ifdef SYNC_FILE_RANGE_WRITE
        /* advice: an error here shows at the fdatasync that follows */
        (void)sync_file_range(L.wfd, (off_t)L.flushed, (off_t)(off - L.flushed), SYNC_FILE_RANGE_WRITE);
#endif
        L.flushed = off;
    }
    return 0;
}

int seglog_sync(char *err, size_t errlen)
{
    if (L.wfd >= 0 && fdatasync(L.wfd) != 0) {
        snprintf(err, errlen, "fdatasync of the log failed: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

int seglog_remove(uint32_t id)
{
    pthread_mutex_lock(&L.mu);
    size_t i = 0;
    while (i < L.n && L.ids[i] != id)
        i++;
    if (i == L.n || i == L.n - 1) {
        pthread_mutex_unlock(&L.mu);
        return -EINVAL;
    }
    L.bytes -= L.sizes[i];
    memmove(L.ids + i, L.ids + i + 1, (L.n - i - 1) * sizeof *L.ids);
    memmove(L.sizes + i, L.sizes + i + 1, (L.n - i - 1) * sizeof *L.sizes);
    L.n--;
    pthread_mutex_unlock(&L.mu);
    char path[4200];
    path_of(id, path, sizeof path);
    return unlink(path) == 0 ? 0 : -errno;
}

int seglog_reset(char *err, size_t errlen)
{
    pthread_mutex_lock(&L.mu);
    size_t n = L.n;
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        abort();
    memcpy(ids, L.ids, n * sizeof *ids);
    L.n = 0;
    L.bytes = 0;
    pthread_mutex_unlock(&L.mu);
    if (L.wfd >= 0)
        close(L.wfd);
    L.wfd = -1;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        path_of(ids[i], path, sizeof path);
        unlink(path);
    }
    free(ids);
    return new_segment(err, errlen);
}

int seglog_truncate(uint32_t seg, uint32_t off)
{
    char path[4200];
    path_of(seg, path, sizeof path);
    if (truncate(path, off) != 0)
        return -errno;
    pthread_mutex_lock(&L.mu);
    for (size_t i = 0; i < L.n; i++) {
        if (L.ids[i] == seg) {
            L.bytes -= L.sizes[i] - off;
            L.sizes[i] = off;
        }
    }
    pthread_mutex_unlock(&L.mu);
    if (L.n && L.ids[L.n - 1] == seg)
        L.wsize = L.zeroed = L.flushed = off;
    return 0;
}

/* ------------------------------------------------------------ reading */

static int reader_fd(uint32_t id)
{
    if (!cache_registered) {
        /* a value, so this thread's descriptors are closed when it ends */
        pthread_once(&cache_once, cache_key_make);
        (void)pthread_setspecific(cache_key, &cache_registered);
        cache_registered = true;
    }
    int free_slot = -1, oldest = 0;
    for (int i = 0; i < FD_CACHE; i++) {
        if (cache[i].fd > 0 && cache[i].id == id) {
            cache[i].used = ++cache_clock;
            return cache[i].fd;
        }
        if (cache[i].fd <= 0 && free_slot < 0)
            free_slot = i;
        if (cache[i].used < cache[oldest].used)
            oldest = i;
    }
    int slot = free_slot >= 0 ? free_slot : oldest;
    if (cache[slot].fd > 0)
        close(cache[slot].fd);
    char path[4200];
    path_of(id, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cache[slot].fd = fd > 0 ? fd : 0;
    cache[slot].id = id;
    cache[slot].used = ++cache_clock;
    return fd >= 0 ? fd : -errno;
}

static ssize_t read_at(int fd, char *out, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, out + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int seglog_read(struct seg_pos pos, char *out, size_t len)
{
    int fd = reader_fd(pos.seg);
    if (fd < 0)
        return fd; /* -ENOENT, or out of descriptors (-EMFILE), ... */
    ssize_t n = read_at(fd, out, len, pos.off);
    if (n < 0)
        return (int)n;
    return (size_t)n == len ? 0 : -EIO;
}

void seg_iter_init(struct seg_iter *it, struct seg_pos from)
{
    memset(it, 0, sizeof *it);
    it->ra_size = SEG_READ_AHEAD;
    it->pos = from;
    if (it->pos.off < SEG_HEADER_LEN)
        it->pos.off = SEG_HEADER_LEN;
}

/* The segment after id, 0 when id is the last. */
static uint32_t next_segment(uint32_t id)
{
    uint32_t next = 0;
    pthread_mutex_lock(&L.mu);
    for (size_t i = 0; i < L.n; i++) {
        if (L.ids[i] > id) {
            next = L.ids[i];
            break;
        }
    }
    pthread_mutex_unlock(&L.mu);
    return next;
}

/* Bytes [off, off + len) of the iterator's segment (open as fd) at *out:
 * from the read-ahead buffer, refilled from off on when they are not all
 * in it. Returns how many of the len there are (fewer at the file's end),
 * or -errno. A refill reads what the file has now: a record the writer
 * was still appending is re-read whole when it is reached. */
static ssize_t ra_view(struct seg_iter *it, int fd, uint64_t off, size_t len, const char **out)
{
    if (it->ra_seg != it->pos.seg || off < it->ra_off || off + len > it->ra_off + it->ra_len) {
        size_t want = len > it->ra_size ? len : it->ra_size;
        if (it->ra_cap < want) {
            free(it->ra);
            if (!(it->ra = malloc(want)))
                abort();
            it->ra_cap = want;
        }
        it->ra_len = 0;
        ssize_t n = read_at(fd, it->ra, want, off);
        if (n < 0)
            return n;
        it->ra_seg = it->pos.seg;
        it->ra_off = off;
        it->ra_len = (size_t)n;
        it->ra_fresh = true;
    }
    size_t have = off < it->ra_off + it->ra_len ? (size_t)(it->ra_off + it->ra_len - off) : 0;
    *out = it->ra + (off - it->ra_off);
    return (ssize_t)(have < len ? have : len);
}

int seg_iter_next(struct seg_iter *it)
{
    for (;;) {
        int fd = reader_fd(it->pos.seg);
        if (fd < 0 && fd != -ENOENT)
            return fd; /* out of descriptors, say: not a segment that is gone */
        if (fd < 0) {
            uint32_t next = next_segment(it->pos.seg);
            if (!next)
                return 0;
            it->pos = (struct seg_pos){next, SEG_HEADER_LEN};
            continue;
        }
        const char *hdr;
        it->ra_fresh = false;
        ssize_t n = ra_view(it, fd, it->pos.off, SEG_REC_HEADER, &hdr);
        if (n < 0)
            return (int)n;
        static const char zero[SEG_REC_HEADER];
        bool end = n == 0 || memcmp(hdr, zero, (size_t)n) == 0;
        if (end && !it->ra_fresh) {
            /* the end as the buffer saw it, maybe zeros written ahead that
             * records have replaced since: ask the file again */
            it->ra_len = 0;
            continue;
        }
        if (end) {
            /* the end of this segment (of its file, or of its records
             * where zeros written ahead begin): the next one, if any */
            uint32_t next = next_segment(it->pos.seg);
            if (!next)
                return 0;
            it->pos = (struct seg_pos){next, SEG_HEADER_LEN};
            continue;
        }
        uint32_t len = get_u32((const unsigned char *)hdr), crc = get_u32((const unsigned char *)hdr + 4);
        bool hdr_fresh = it->ra_fresh;
        if ((size_t)n < SEG_REC_HEADER || len > SEG_MAX_RECORD) {
            if (!hdr_fresh) {
                it->ra_len = 0;
                continue;
            }
            it->torn = true;
            return 0;
        }
        /* the type byte and the payload after it, as the CRC covers them */
        const char *rec;
        n = ra_view(it, fd, (uint64_t)it->pos.off + 8, (size_t)len + 1, &rec);
        if (n < 0)
            return (int)n;
        if ((size_t)n < (size_t)len + 1 || (uint32_t)crc32(0L, (const Bytef *)rec, len + 1) != crc) {
            if (!hdr_fresh) {
                /* read before the writer finished it: read it again */
                it->ra_len = 0;
                continue;
            }
            it->torn = true;
            return 0;
        }
        it->type = (uint8_t)rec[0];
        it->data = rec + 1;
        it->len = len;
        it->at = it->pos;
        it->pos.off += SEG_REC_HEADER + len;
        return 1;
    }
}

void seg_iter_free(struct seg_iter *it)
{
    free(it->ra);
    it->ra = NULL;
    it->ra_cap = it->ra_len = 0;
}
