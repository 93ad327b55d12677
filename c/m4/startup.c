/* Reset for a Cortex-M4 (QEMU's mps2-an386): the vector table, .data copied from flash,
 * .bss zeroed, newlib's semihosting set up, then main; exit() ends QEMU by semihosting. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _data_load, _data_start, _data_end, __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

void reset_handler(void);
/* Without the start files (-nostartfiles), newlib's init and fini arrays call these. */
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}
static void fault_handler(void) { exit(3); }

/* The first 16 entries of the vector table: the initial stack pointer, then handlers. */
typedef union {
    uint32_t *stack;
    void (*handler)(void);
} vector;

__attribute__((section(".vectors"), used)) static const vector vectors[16] = {
    {.stack = &__stack_top},       {.handler = reset_handler}, {.handler = fault_handler},
    {.handler = fault_handler},    {.handler = fault_handler}, {.handler = fault_handler},
    {.handler = fault_handler},
};

void reset_handler(void) {
    uint32_t *src = &_data_load, *dst = &_data_start;
    while (dst < &_data_end) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}
