<?php

// For use without Composer: require this file, as Composer's
// vendor/autoload.php would be required, to load Softreload\Worker\*.

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Softreload\\Worker\\';
    if (strncmp($class, $prefix, strlen($prefix)) === 0) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
