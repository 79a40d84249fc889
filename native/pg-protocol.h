/*
 * Generated from src/protocol/meanings.ts by native/gen-protocol-header.mjs: do not edit.
 * After changing the table: npm run build && node native/gen-protocol-header.mjs
 * (test/unit/protocol-meanings.test.ts fails while this file differs from the table).
 */
#ifndef PGWARD_PG_PROTOCOL_H
#define PGWARD_PG_PROTOCOL_H

#include <stdint.h>

/* The protocol's own limit on a length field. */
#define PGP_MAX_LENGTH 1073741824u

#define PGP_FE_AWAITS_READY 1
#define PGP_FE_STARTS_STATEMENT 2
#define PGP_FE_EXTENDED 4
#define PGP_FE_CLOSES_BATCH 8
#define PGP_FE_TERMINATES 16
#define PGP_BE_ENDS_OK 1
#define PGP_BE_ENDS_ERROR 2
#define PGP_BE_READY 4
#define PGP_BE_KEEPS_LAST_WORD 8
#define PGP_BE_REPORTS_ERROR 16

/* Meanings of each frontend type byte. */
static const uint8_t pgp_frontend_flags[256] = {
    [0x42] /* 'B' Bind */ = PGP_FE_EXTENDED,
    [0x43] /* 'C' Close */ = PGP_FE_EXTENDED,
    [0x44] /* 'D' Describe */ = PGP_FE_EXTENDED,
    [0x45] /* 'E' Execute */ = PGP_FE_STARTS_STATEMENT | PGP_FE_EXTENDED,
    [0x46] /* 'F' FunctionCall */ = PGP_FE_AWAITS_READY,
    [0x48] /* 'H' Flush */ = PGP_FE_EXTENDED,
    [0x50] /* 'P' Parse */ = PGP_FE_EXTENDED,
    [0x51] /* 'Q' Query */ = PGP_FE_AWAITS_READY | PGP_FE_STARTS_STATEMENT,
    [0x53] /* 'S' Sync */ = PGP_FE_AWAITS_READY | PGP_FE_CLOSES_BATCH,
    [0x58] /* 'X' Terminate */ = PGP_FE_TERMINATES,
};

/* Meanings of each backend type byte. */
static const uint8_t pgp_backend_flags[256] = {
    [0x41] /* 'A' NotificationResponse */ = PGP_BE_KEEPS_LAST_WORD,
    [0x43] /* 'C' CommandComplete */ = PGP_BE_ENDS_OK,
    [0x45] /* 'E' ErrorResponse */ = PGP_BE_ENDS_ERROR | PGP_BE_REPORTS_ERROR,
    [0x49] /* 'I' EmptyQueryResponse */ = PGP_BE_ENDS_OK,
    [0x4e] /* 'N' NoticeResponse */ = PGP_BE_KEEPS_LAST_WORD,
    [0x5a] /* 'Z' ReadyForQuery */ = PGP_BE_READY | PGP_BE_KEEPS_LAST_WORD,
    [0x73] /* 's' PortalSuspended */ = PGP_BE_ENDS_OK,
};

/* Largest length field per type byte; 0 stands for PGP_MAX_LENGTH. */
static const uint32_t pgp_frontend_max_length[256] = {
    [0x43] /* 'C' Close */ = 10000u,
    [0x44] /* 'D' Describe */ = 10000u,
    [0x45] /* 'E' Execute */ = 10000u,
    [0x48] /* 'H' Flush */ = 10000u,
    [0x53] /* 'S' Sync */ = 10000u,
    [0x58] /* 'X' Terminate */ = 10000u,
    [0x63] /* 'c' CopyDone */ = 10000u,
    [0x66] /* 'f' CopyFail */ = 10000u,
};
static const uint32_t pgp_backend_max_length[256] = {
};

/* An ErrorResponse whose severity reads one of these says the backend is leaving. */
#define PGP_SEVERITY_FIELD 'V'
#define PGP_LOCALIZED_SEVERITY_FIELD 'S'
#define PGP_LEAVING_SEVERITY_COUNT 2
static const char *const pgp_leaving_severities[PGP_LEAVING_SEVERITY_COUNT] = {"FATAL", "PANIC"};

#endif
