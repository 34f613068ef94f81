/*
 * The bare guest: a freestanding 64-bit ELF (no libc, no Linux) that a VMM loads like a
 * vmlinux and enters in 64-bit long mode (Linux 64-bit boot protocol: paging on, identity
 * mapped low memory, flat 64-bit CS). It measures a VMM's floor: it prints the ready line,
 * signals the Firecracker-compatible boot timer and resets the VM through the i8042.
 *
 * Built by microvm/build.rs with GNU as + ld. One source gives every variant through
 * --defsym VARIANT=n, so the hostile guests share the well-tested boot code:
 *   0 bare     `BULKHEAD-READY <tsc> bare`, boot timer, i8042 reset
 *   1 triple   loads an empty IDT and executes ud2: #UD -> #GP -> #DF -> triple fault
 *   2 mmio     touches unmapped MMIO once, prints a ready line, then writes MMIO forever
 *   3 flood    writes to the serial port forever
 *   4 halt     prints a ready line and halts with interrupts off, forever
 *   5 panic    prints a ready line and Linux's panic line, then resets through the i8042
 *   6 poweroff prints a ready line and Linux's power-off line, then halts forever
 *   7 pvh      the bare guest with a PVH entry too (ELF note XEN_ELFNOTE_PHYS32_ENTRY): the
 *              64-bit entry prints `BULKHEAD-READY <tsc> linux64`, the 32-bit PVH entry checks
 *              that EBX points at an hvm_start_info (its magic) and prints
 *              `BULKHEAD-READY 0 pvh`; both then hit the boot timer and reset. A wrong magic
 *              triple-faults. So a test sees which entry a VMM took, and that it was right.
 *   8 hog      writes one byte to every 4 KiB page from 2 MiB to 32 MiB, whatever RAM it was
 *              given (past its RAM each write is an MMIO exit), prints `BULKHEAD-READY
 *              <tsc> hog` and halts with interrupts off, forever: the VMM's RSS must stay
 *              within the RAM it was told to give (--memory), however much the guest touches.
 *   9 virtio   a hostile, then an honest virtio driver for the first virtio-mmio device (run
 *              with --disk): 200 chains that loop and point past RAM, notified 1000 times;
 *              an available index 1000 ahead (the device must fail: DEVICE_NEEDS_RESET);
 *              then a reset and one well-formed FLUSH. Prints `BULKHEAD-READY <tsc> virtio`
 *              and `virtio <status after the lie> <the flush's status byte>`, then resets.
 *              Every notification goes through KVM's ioeventfd and the VMM's event loop.
 */
        .set COM1,        0x3f8
        .set I8042_CMD,   0x64
        .set I8042_RESET, 0xfe
        .set BOOT_TIMER,  0xd0000000      /* Firecracker's MMIO boot-timer address */
        .set BOOT_MAGIC,  123
        .set UNMAPPED,    0xe0000000      /* inside the 32-bit MMIO gap, no device there */
        .set HOG_START,   0x200000        /* above the image, its .bss and the boot tables */
        .set HOG_END,     0x2000000       /* 32 MiB: inside the VMM's 1 GiB identity map */
        .set VIO,         0xd0001000      /* the first virtio-mmio device (its 2 MiB page is the boot timer's) */
        .set Q_DESC,      0x300000        /* its queue: descriptor table, rings, a request */
        .set Q_AVAIL,     0x310000
        .set Q_USED,      0x320000
        .set REQ,         0x330000        /* a request header; its status byte at +0x100 */

        .section .text
        .code64
        .globl _start
_start:
        cli
        lea     stack_top(%rip), %rsp

        /*
         * Reach the MMIO gap (the boot timer sits at 3.25 GiB): the VMM's identity map
         * (Firecracker's and ours) covers only the first 1 GiB, so we hang one more page
         * directory, for 3-4 GiB, into the live tables: PDPT[3] of the table that CR3 points
         * to. Extending the live tables costs one trapped write; building and loading a full
         * 4 GiB table of our own cost ~12 ms under PVM's shadow paging.
         * The directory lives in .bss, which no loader promises to zero: clear it first.
         */
        lea     pd_high(%rip), %rdi
        xor     %eax, %eax
        mov     $512, %ecx
        rep stosq
        /* Two 2 MiB pages are all we touch: the boot timer's and the unmapped one's. */
        mov     $(BOOT_TIMER | 0x83), %eax  /* present | writable | 2 MiB page */
        mov     %rax, pd_high + ((BOOT_TIMER - 0xc0000000) >> 21) * 8(%rip)
        mov     $(UNMAPPED | 0x83), %eax
        mov     %rax, pd_high + ((UNMAPPED - 0xc0000000) >> 21) * 8(%rip)

        mov     %cr3, %rax
        and     $~0xfff, %rax
        mov     (%rax), %rbx                /* PML4[0] -> PDPT */
        and     $~0xfff, %rbx
        lea     pd_high(%rip), %rax
        or      $0x3, %rax                  /* present | writable */
        mov     %rax, 24(%rbx)              /* PDPT[3]: 3 GiB - 4 GiB */

.if VARIANT == 1
        /* Triple fault: with no IDT every exception escalates to a shutdown. */
        lidt    null_idt(%rip)
        ud2
.endif

.if VARIANT == 3
        /* Serial flood: never stops, never exits. The VMM must stay bounded and time out. */
        mov     $COM1, %dx
        mov     $'A', %al
3:      out     %al, %dx
        jmp     3b
.endif

.if VARIANT == 2
        /* A write and a read where no device lives; a VMM must survive both. */
        /* Addresses above 2 GiB do not fit a sign-extended disp32: go through a register. */
        mov     $UNMAPPED, %edi
        movb    $0x55, (%rdi)
        movb    (%rdi), %al
.endif

.if VARIANT == 8
        /* Touch every page up to HOG_END, RAM or not. */
        mov     $HOG_START, %edi
7:      movb    $1, (%rdi)
        add     $4096, %rdi
        cmp     $HOG_END, %rdi
        jb      7b
.endif

.if VARIANT == 9
        mov     $VIO, %ebx
        call    vio_init
        /* 256 descriptors, each a loop to itself, writable, past RAM, with a lying length. */
        mov     $Q_DESC, %edi
        xor     %ecx, %ecx
1:      movabs  $0xfffffff000000000, %rax
        mov     %rax, (%rdi)
        movl    $0xffffffff, 8(%rdi)
        movw    $3, 12(%rdi)                /* NEXT | WRITE */
        mov     %cx, 14(%rdi)               /* next: itself */
        add     $16, %rdi
        inc     %ecx
        cmp     $256, %ecx
        jb      1b
        /* The available ring offers 200 of them... */
        mov     $Q_AVAIL, %edi
        xor     %ecx, %ecx
2:      mov     %cx, 4(%rdi,%rcx,2)
        inc     %ecx
        cmp     $256, %ecx
        jb      2b
        movw    $200, 2(%rdi)
        /* ...notified 1000 times (QueueNotify = 0: KVM's ioeventfd, no exit to the VMM). */
        mov     $1000, %ecx
3:      movl    $0, 0x50(%rbx)
        loop    3b
        /* Then an available index 1000 ahead of what the device has seen. */
        movw    $1200, 2(%rdi)
        movl    $0, 0x50(%rbx)
        /* Wait, boundedly, for DEVICE_NEEDS_RESET (each Status read is an MMIO exit). */
        mov     $1000000, %ecx
4:      mov     0x70(%rbx), %eax
        test    $64, %eax
        jnz     5f
        pause
        loop    4b
5:      mov     %eax, %r12d
        /* An honest driver: reset, set up again, one FLUSH request. */
        call    vio_init
        mov     $REQ, %edi
        movl    $4, (%rdi)                  /* VIRTIO_BLK_T_FLUSH */
        movl    $0, 4(%rdi)
        movq    $0, 8(%rdi)
        movb    $0xee, 0x100(%rdi)
        mov     $Q_DESC, %edi
        movq    $REQ, (%rdi)                /* the header: readable, next 1 */
        movl    $16, 8(%rdi)
        movw    $1, 12(%rdi)
        movw    $1, 14(%rdi)
        movq    $(REQ + 0x100), 16(%rdi)    /* the status byte: writable, last */
        movl    $1, 24(%rdi)
        movw    $2, 28(%rdi)
        movw    $0, 30(%rdi)
        mov     $Q_AVAIL, %edi
        movw    $0, 4(%rdi)
        movw    $1, 2(%rdi)
        movl    $0, 0x50(%rbx)
        /* Wait for the used index (guest RAM: no exits), boundedly. */
        mov     $Q_USED, %esi
        mov     $1000000000, %ecx
6:      cmpw    $1, 2(%rsi)
        je      7f
        pause
        loop    6b
7:      mov     $REQ, %edi
        movzbl  0x100(%rdi), %r13d
.endif

        /* The ready line: `BULKHEAD-READY <tsc> <boot_id>`. */
        lea     msg_ready(%rip), %rsi
        call    puts
        rdtsc
        shl     $32, %rdx
        or      %rdx, %rax
        call    putu64
        lea     msg_tail(%rip), %rsi
        call    puts

.if VARIANT == 2
        mov     $UNMAPPED, %edi
4:      movb    $0x55, (%rdi)
        jmp     4b
.endif

.if VARIANT == 9
        lea     msg_virtio(%rip), %rsi
        call    puts
        mov     %r12, %rax
        call    putu64
        lea     msg_space(%rip), %rsi
        call    puts
        mov     %r13, %rax
        call    putu64
        lea     msg_newline(%rip), %rsi
        call    puts
.endif

.if VARIANT == 5
        lea     msg_panic(%rip), %rsi
        call    puts
.endif

.if VARIANT == 6
        lea     msg_poweroff(%rip), %rsi
        call    puts
.endif

.if VARIANT == 4 || VARIANT == 6 || VARIANT == 8
5:      hlt
        jmp     5b
.endif

        /* Tell the VMM the guest has booted (Firecracker: one byte, 123, offset 0). */
        mov     $BOOT_TIMER, %edi
        movb    $BOOT_MAGIC, (%rdi)

        /* Reset through the keyboard controller: Firecracker and bulkhead-vm end the VM. */
        mov     $I8042_RESET, %al
        out     %al, $I8042_CMD
6:      hlt
        jmp     6b

/*
 * puts: write the NUL-terminated string at %rsi to COM1.
 * No LSR polling: every VMM we target has a UART whose transmitter is always empty, and
 * each poll would cost one more VM exit on the measured path.
 */
puts:
        mov     $COM1, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      ret

.if VARIANT == 9
/*
 * vio_init: the virtio-mmio device at %rbx from reset to DRIVER_OK (virtio 1.2 §3.1.1), taking
 * only VERSION_1, with queue 0 of 256 entries at Q_DESC, Q_AVAIL, Q_USED (rings emptied).
 */
vio_init:
        movl    $0, 0x70(%rbx)              /* Status: reset */
        movl    $1, 0x70(%rbx)              /* ACKNOWLEDGE */
        movl    $3, 0x70(%rbx)              /* DRIVER */
        movl    $1, 0x24(%rbx)              /* DriverFeaturesSel: bits 32-63 */
        movl    $1, 0x20(%rbx)              /* VIRTIO_F_VERSION_1 */
        movl    $11, 0x70(%rbx)             /* FEATURES_OK */
        movl    $0, 0x30(%rbx)              /* QueueSel */
        movl    $256, 0x38(%rbx)            /* QueueNum */
        movl    $Q_DESC, 0x80(%rbx)
        movl    $0, 0x84(%rbx)
        movl    $Q_AVAIL, 0x90(%rbx)
        movl    $0, 0x94(%rbx)
        movl    $Q_USED, 0xa0(%rbx)
        movl    $0, 0xa4(%rbx)
        mov     $Q_AVAIL, %edi
        movl    $0, (%rdi)
        mov     $Q_USED, %edi
        movl    $0, (%rdi)
        movl    $1, 0x44(%rbx)              /* QueueReady */
        movl    $15, 0x70(%rbx)             /* DRIVER_OK */
        ret
.endif

/* putu64: write %rax in decimal to COM1. */
putu64:
        lea     numbuf_end(%rip), %rdi
        mov     $10, %ecx
1:      xor     %edx, %edx
        div     %rcx
        add     $'0', %dl
        dec     %rdi
        mov     %dl, (%rdi)
        test    %rax, %rax
        jnz     1b
        mov     %rdi, %rsi
        jmp     puts

        .section .rodata
msg_ready:
        .asciz  "BULKHEAD-READY "
msg_tail:
.if VARIANT == 0
        .asciz  " bare\n"
.elseif VARIANT == 2
        .asciz  " mmio\n"
.elseif VARIANT == 7
        .asciz  " linux64\n"
.elseif VARIANT == 8
        .asciz  " hog\n"
.elseif VARIANT == 9
        .asciz  " virtio\n"
.else
        .asciz  " hostile\n"
.endif
.if VARIANT == 5
msg_panic:
        .asciz  "[    1.000000] Kernel panic - not syncing: bulkhead bare test\n"
.endif
.if VARIANT == 6
msg_poweroff:
        .asciz  "[    1.000000] reboot: Power down\n"
.endif
.if VARIANT == 9
msg_virtio:
        .asciz  "virtio "
msg_space:
        .asciz  " "
msg_newline:
        .asciz  "\n"
.endif
.if VARIANT == 7
msg_pvh:
        .asciz  "BULKHEAD-READY 0 pvh\n"
.endif
        .balign 8
null_idt:
        .word   0
        .quad   0

.if VARIANT == 7
/*
 * The PVH entry (Xen's PVH boot ABI, as Linux implements it): 32-bit protected mode, paging
 * off, flat segments, EBX = physical address of the hvm_start_info. No stack is promised.
 */
        .set XEN_HVM_START_MAGIC, 0x336ec578
        .section .text
        .code32
pvh_start:
        cli
        cmpl    $XEN_HVM_START_MAGIC, (%ebx)
        jne     9f
        mov     $COM1, %dx
        mov     $msg_pvh, %esi
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      movb    $BOOT_MAGIC, BOOT_TIMER     /* paging off: the physical address */
        mov     $I8042_RESET, %al
        out     %al, $I8042_CMD
3:      hlt
        jmp     3b
        /* Not an hvm_start_info: #UD with the VMM's empty IDT escalates to a triple fault. */
9:      ud2
        .code64

/* The note a VMM finds the PVH entry by: owner "Xen", type 18, the entry's address. */
        .section .note.Xen, "a", @note
        .balign 4
        .long   2f - 1f                     /* namesz */
        .long   4f - 3f                     /* descsz */
        .long   18                          /* XEN_ELFNOTE_PHYS32_ENTRY */
1:      .asciz  "Xen"
2:      .balign 4
3:      .long   pvh_start
4:      .balign 4
.endif

        .section .data
numbuf:
        .fill   24, 1, 0
numbuf_end:
        .byte   0

        .section .bss
        .balign 4096
pd_high:
        .skip   4096
        .skip   4096
stack_top:
